"""A small, well-formed PDF made on the spot: for demo invoices and packing slips, and for a test
message that carries an attachment as real mail does."""

from __future__ import annotations


def pdf_file(content: bytes = b"") -> bytes:
    """A well-formed one-page PDF: catalog, page tree, page, a content stream holding `content` byte for
    byte, a cross-reference table with the real offsets, the trailer and the closing %%EOF."""
    objects = [
        b"<</Type/Catalog/Pages 2 0 R>>",
        b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
        b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]/Contents 4 0 R"
        b"/Resources<</Font<</F1<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>>>>>>>",
        b"<</Length %d>>stream\n%s\nendstream" % (len(content), content),
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def text_page(*lines: str) -> bytes:
    """A one-page PDF that shows `lines` in Helvetica, top down."""
    shown = b"".join(b"(%s) Tj T* " % _literal(line) for line in lines)
    return pdf_file(b"BT /F1 12 Tf 14 TL 72 720 Td " + shown + b"ET")


def _literal(line: str) -> bytes:
    """A line as a PDF string literal's content: no backslash or parenthesis to escape, Latin-1."""
    return line.translate({ord(c): None for c in "\\()"}).encode("latin-1", "replace")
