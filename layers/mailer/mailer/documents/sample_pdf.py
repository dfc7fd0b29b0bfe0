"""A small, well-formed PDF made on the spot: for demo invoices and packing slips, and for a test
message that carries an attachment as real mail does."""

from __future__ import annotations

from collections.abc import Sequence

LINES_PER_PAGE = 48  # 14 pt apart from the top margin down to the bottom one of a Letter page


def pdf_file(content: bytes = b"") -> bytes:
    """A well-formed one-page PDF: catalog, page tree, page, a content stream holding `content` byte for
    byte, a cross-reference table with the real offsets, the trailer and the closing %%EOF."""
    objects = [
        b"<</Type/Catalog/Pages 2 0 R>>",
        b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
        b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]/Contents 4 0 R"
        b"/Resources<</Font<</F1<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>>>>>>>",
        _stream(content),
    ]
    return _assembled(objects)


def text_pages(pages: Sequence[Sequence[str]]) -> bytes:
    """A PDF of one page per item of `pages`, each showing its lines in Helvetica, top down."""
    count = len(pages)
    kids = b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(count))
    objects = [
        b"<</Type/Catalog/Pages 2 0 R>>",
        b"<</Type/Pages/Kids[%s]/Count %d>>" % (kids, count),
        b"<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>",
    ]
    for i, lines in enumerate(pages):
        objects.append(
            b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]/Contents %d 0 R"
            b"/Resources<</Font<</F1 3 0 R>>>>>>" % (5 + 2 * i)
        )
        objects.append(_stream(_shown(lines)))
    return _assembled(objects)


def sample_invoice(first_page: Sequence[str], target_bytes: int) -> bytes:
    """A multi-page PDF of at least `target_bytes` (and at most one page more), the same for the same
    arguments: `first_page`, then pages of numbered sample line items, as a long invoice has."""
    pages: list[Sequence[str]] = [first_page]
    number = 0
    while True:
        document = text_pages(pages)
        if len(document) >= target_bytes:
            return document
        items = []
        for _ in range(LINES_PER_PAGE):
            number += 1
            items.append(f"{number:04d}  Sample line item {number:04d}: 1 x 0.00 = 0.00 (not a charge)")
        pages.append(items)


def _stream(content: bytes) -> bytes:
    return b"<</Length %d>>stream\n%s\nendstream" % (len(content), content)


def _assembled(objects: Sequence[bytes]) -> bytes:
    """The objects numbered from 1, a cross-reference table with their real offsets, the trailer
    (object 1 is the catalog) and the closing %%EOF."""
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
    return pdf_file(_shown(lines))


def _shown(lines: Sequence[str]) -> bytes:
    """A content stream that writes `lines` in 12 pt Helvetica, 14 pt apart, from the top left margin."""
    shown = b"".join(b"(%s) Tj T* " % _literal(line) for line in lines)
    return b"BT /F1 12 Tf 14 TL 72 720 Td " + shown + b"ET"


def _literal(line: str) -> bytes:
    """A line as a PDF string literal's content: no backslash or parenthesis to escape, Latin-1."""
    return line.translate({ord(c): None for c in "\\()"}).encode("latin-1", "replace")
