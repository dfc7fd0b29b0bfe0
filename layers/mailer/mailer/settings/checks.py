"""The checks of a test send besides the send itself: the attachment, the server's size limit, and the
From domain's SPF, DMARC and DKIM, each with what to change when it does not pass.

No check raises and none makes the test fail: a lookup that fails gives `skipped`. The DNS lookups
use the resolvers of MAILER_DNS_SERVERS (`DnsLookup`) and share one time budget.
"""

from __future__ import annotations

import ipaddress
import math
import time
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from mailer.delivery.providers import PROVIDERS, Provider

PASS, WARN, FAIL, SKIPPED = "pass", "warn", "fail", "skipped"

HEADROOM_BYTES = 64 * 1024  # the headers, the body and the MIME boundaries around the attachments
LOOKUP_FAILED = "DNS lookup failed"
SES_DKIM_PAGE = (
    "Amazon SES console > Configuration > Identities > {domain} > Authentication > "
    "DomainKeys Identified Mail (DKIM)"
)
DMARC_WHY = (
    "Gmail and Yahoo require DMARC of bulk senders, and Outlook.com rejects failing mail of "
    "high-volume senders with 550 5.7.515"
)
DMARC_PARENT_LOOKUPS = 4  # parent domains tried for a subdomain's policy (RFC 7489 section 6.6.3)


@dataclass(frozen=True)
class Check:
    name: str  # attachment | size_limit | spf | dmarc | dkim
    status: str  # pass | warn | fail | skipped
    detail: str
    hint: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "hint": self.hint}


def _mb(size: int, *, round_down: bool = False) -> str:
    """Sizes as mail providers state them: Microsoft's 150 MB is 157,286,400 bytes. A limit to keep
    below is rounded down, so that what it names still fits."""
    mb = size / (1024 * 1024)
    return f"{math.floor(mb * 10) / 10 if round_down else mb:.1f}".removesuffix(".0") + " MB"


# --- the message ----------------------------------------------------------------------------------


def encoded_size(attachment_bytes: int) -> int:
    """Bytes that many attachment bytes take in the message: base64 (4 for every 3, rounded up) in
    lines of 76 characters, each ended by CRLF."""
    encoded = 4 * math.ceil(attachment_bytes / 3)
    return encoded + 2 * math.ceil(encoded / 76)


def size_limit_check(server_size: int | None, attachment_limit_bytes: int) -> Check:
    """The server's SIZE (RFC 1870, from its EHLO answer) against the largest message this stack sends:
    the attachment limit once encoded, plus room for headers and body."""
    needed = encoded_size(attachment_limit_bytes) + HEADROOM_BYTES
    if server_size is None:
        return Check(
            "size_limit",
            SKIPPED,
            "no SIZE advertised: the server does not say how large a message it takes.",
            f"Messages with attachments up to {_mb(attachment_limit_bytes)} are up to {_mb(needed)} "
            "once encoded; if large documents bounce, ask the provider for its message size limit.",
        )
    if server_size == 0:
        return Check("size_limit", PASS, "The server advertises no fixed message size limit (SIZE 0).")
    if server_size < needed:
        fits = _mb(_largest_attachment(server_size), round_down=True)
        return Check(
            "size_limit",
            WARN,
            f"The server takes messages up to {_mb(server_size)}, but with attachments up to "
            f"{_mb(attachment_limit_bytes)} a message can be {_mb(needed)} once encoded.",
            f"Keep the attachments of one email below {fits}, "
            "or send large documents through a provider that takes larger messages.",
        )
    return Check(
        "size_limit",
        PASS,
        f"The server takes messages up to {_mb(server_size)}; the largest this stack sends is {_mb(needed)}.",
    )


def _largest_attachment(server_size: int) -> int:
    """Attachment bytes that still fit in a message of server_size (the inverse of encoded_size)."""
    lines = (server_size - HEADROOM_BYTES) / 78  # 76 characters and CRLF
    return max(0, math.floor(lines * 76 * 3 / 4))


def attachment_check(sent: bool | None, attachment_bytes: int) -> Check:
    """Whether the server took the test message with its PDF attached. `sent` is False only when the
    server refused the message at the data stage, None when the send stopped before it."""
    size = f"{attachment_bytes / 1024:.0f} KB"
    if sent is None:
        return Check("attachment", SKIPPED, "The send stopped before the message with its PDF was sent.")
    if sent:
        return Check("attachment", PASS, f"The server accepted the test message with a {size} PDF attached.")
    return Check(
        "attachment",
        FAIL,
        f"The server refused the test message with a {size} PDF attached, so invoices and other "
        "documents would be refused too.",
        "Ask the provider (or the administrator of the server) whether a filter or policy refuses "
        "attachments or PDF files, and allow them for this account.",
    )


# --- DNS --------------------------------------------------------------------------------------------


def parse_dns_servers(text: str | None) -> list[tuple[str, int]]:
    """MAILER_DNS_SERVERS: comma-separated `host:port` (`[v6]:port` for IPv6; the port may be left out
    for 53). An empty value is the system's resolvers. The host is an IP address, since no resolver is
    there yet to look a name up."""
    servers = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        host, port = item, "53"
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            if rest:
                if not rest.startswith(":"):
                    raise ValueError(f"MAILER_DNS_SERVERS: {item!r} is not [address]:port")
                port = rest[1:]
        elif item.count(":") == 1:
            host, port = item.split(":")
        try:
            address = str(ipaddress.ip_address(host))
        except ValueError:
            raise ValueError(f"MAILER_DNS_SERVERS: {item!r} does not start with an IP address") from None
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"MAILER_DNS_SERVERS: {item!r} has no port between 1 and 65535")
        servers.append((address, int(port)))
    return servers


class DnsLookup:
    """TXT lookups within one time budget shared by all of them: the budget starts with the first
    lookup, each query may take what is left, and once nothing is left a lookup fails at once.

    One instance serves one test. `servers` is MAILER_DNS_SERVERS (`parse_dns_servers`); None or ""
    uses the system's resolvers (/etc/resolv.conf). The queries are sent here rather than through
    dnspython's Resolver.resolve, which sleeps a back-off after a round of silent servers without
    looking at its lifetime and so can run past the budget.
    """

    TRY_SECONDS = 1.0  # one try at one server; a silent server is tried again while the budget lasts
    EDNS_PAYLOAD = 1232  # answers up to this size come over UDP (the DNS flag day 2020 figure)

    def __init__(self, servers: str | None, budget_seconds: float = 2.0) -> None:
        self.servers = parse_dns_servers(servers) or _system_servers()
        self.budget_seconds = budget_seconds
        self._deadline: float | None = None

    def remaining(self) -> float:
        """Seconds left of the budget (all of it before the first lookup)."""
        if self._deadline is None:
            return self.budget_seconds
        return max(0.0, self._deadline - time.monotonic())

    def txt(self, name: str) -> list[str] | None:
        """The TXT records at name, the strings of each record joined (a record longer than 255 bytes
        comes in several). [] when the name does not exist or has no TXT; None when the lookup failed:
        a timeout, SERVFAIL, no server answering, or the budget spent."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self.budget_seconds
        try:
            qname = dns.name.from_text(name)
        except dns.exception.DNSException:
            return None
        request = dns.message.make_query(qname, dns.rdatatype.TXT, use_edns=0, payload=self.EDNS_PAYLOAD)
        servers = list(self.servers)
        while servers and self.remaining() > 0:
            for server in list(servers):
                try:
                    answer = self._ask(server, request)
                except dns.exception.Timeout:
                    continue  # silent: the next server, or this one again while the budget lasts
                if answer is None:  # SERVFAIL, REFUSED, a broken answer: this server is no help
                    servers.remove(server)
                    continue
                return answer
        return None

    def _ask(self, server: tuple[str, int], request: dns.message.QueryMessage) -> list[str] | None:
        """One try at one server: the records, [] for NXDOMAIN or no TXT, None for an answer that is
        no use; dns.exception.Timeout when no answer came in time."""
        left = self.remaining()
        if left <= 0:
            raise dns.exception.Timeout
        address, port = server
        try:
            try:
                response = dns.query.udp(
                    request,
                    address,
                    timeout=min(left, self.TRY_SECONDS),
                    port=port,
                    ignore_unexpected=True,
                    raise_on_truncation=True,
                )
            except dns.message.Truncated:
                response = dns.query.tcp(request, address, timeout=max(self.remaining(), 0.001), port=port)
            if response.rcode() == dns.rcode.NXDOMAIN:
                return []
            if response.rcode() != dns.rcode.NOERROR or not isinstance(response, dns.message.QueryMessage):
                return None
            rrset = dns.resolver.Answer(
                request.question[0].name, dns.rdatatype.TXT, dns.rdataclass.IN, response
            ).rrset
        except dns.exception.Timeout:
            raise
        except (dns.exception.DNSException, OSError):
            return None
        if rrset is None:
            return []
        return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in rrset]


def _system_servers() -> list[tuple[str, int]]:
    """The resolvers of /etc/resolv.conf; none when it is missing or names none."""
    try:
        system = dns.resolver.Resolver(configure=True)
    except dns.exception.DNSException:
        return []
    return [
        (ns, system.nameserver_ports.get(ns, system.port)) for ns in system.nameservers if isinstance(ns, str)
    ]


def dns_checks(
    from_domain: str, provider: str | None, *, resolver: DnsLookup, ses_dkim: str | None = None
) -> list[Check]:
    """The spf, dmarc and dkim checks of the From domain, in that order.

    `provider` is the preset id of the settings (PROVIDERS), None for a server without one. `ses_dkim`
    is the DKIM status of the SES identity (GetEmailIdentity), given when the mail goes through SES.
    """
    domain = from_domain.strip().rstrip(".").lower()
    preset = PROVIDERS.get(provider or "")
    if not domain:
        return [Check(name, SKIPPED, "The From address has no domain.") for name in ("spf", "dmarc", "dkim")]
    return [
        _spf_check(domain, _sending_domain(preset, ses_dkim), _provider_name(preset, ses_dkim), resolver),
        _dmarc_check(domain, resolver),
        _dkim_check(domain, preset, ses_dkim),
    ]


def _sending_domain(preset: Provider | None, ses_dkim: str | None) -> str | None:
    if preset is not None:
        return preset.spf_include
    return "amazonses.com" if ses_dkim is not None else None


def _provider_name(preset: Provider | None, ses_dkim: str | None) -> str:
    if preset is not None:
        return preset.name
    return "Amazon SES" if ses_dkim is not None else "your mail provider"


def _is_spf(record: str) -> bool:
    return record.lower() == "v=spf1" or record.lower().startswith("v=spf1 ")


def _names(record: str, include: str) -> bool:
    """Whether the record names include as `include:` or `redirect=`, with any qualifier."""
    wanted = {f"include:{include}", f"redirect={include}"}
    return any(term.lower().lstrip("+-~?") in wanted for term in record.split())


def _with_include(record: str, include: str) -> str:
    """The record with include added before its `all` (or at its end when it has none)."""
    terms = record.split()
    at = next((i for i, t in enumerate(terms) if t.lower().lstrip("+-~?") == "all"), len(terms))
    return " ".join([*terms[:at], f"include:{include}", *terms[at:]])


def _spf_check(domain: str, include: str | None, provider_name: str, resolver: DnsLookup) -> Check:
    """The From domain's SPF record (RFC 7208), and whether it names the provider's sending domain.

    Only the record itself is read: the include must appear in it literally (or as `redirect=`); an
    include reached through another include is not followed, so a record that covers the provider
    that way still gets the warning (or, with -all, the failure).
    """
    records = resolver.txt(domain)
    if records is None:
        return Check(
            "spf", SKIPPED, LOOKUP_FAILED, f"Try again later; the TXT records of {domain} did not load."
        )
    spf = [r for r in records if _is_spf(r)]
    starter = (
        f"v=spf1 include:{include} ~all" if include else "v=spf1 include:<your provider's SPF domain> ~all"
    )
    if not spf:
        return Check(
            "spf",
            WARN,
            f"{domain} has no SPF record, so receivers cannot tell which servers may send its mail.",
            f'Add a TXT record at {domain}: "{starter}"'
            + ("" if include else " (your mail provider documents its SPF domain)."),
        )
    if len(spf) > 1:
        return Check(
            "spf",
            FAIL,
            f"{domain} has {len(spf)} SPF records; receivers treat that as a permanent error "
            "(RFC 7208 permerror) and SPF fails for all its mail.",
            "Merge them into one TXT record that starts with v=spf1, and delete the others.",
        )
    record = spf[0]
    if include is None or _names(record, include):
        named = f" names {provider_name} (include:{include})" if include else " is published"
        return Check("spf", PASS, f"The SPF record of {domain}{named}: {record}")
    hint = f'Change the TXT record at {domain} to: "{_with_include(record, include)}"'
    if include == "amazonses.com":
        hint += "; with a custom MAIL FROM domain in SES, the include belongs in that domain's record."
    if record.split()[-1].lower() == "-all":
        return Check(
            "spf",
            FAIL,
            f"The SPF record of {domain} does not name {provider_name} (include:{include}) and ends in "
            f"-all, so receivers may reject the mail {provider_name} sends for {domain}.",
            hint,
        )
    return Check(
        "spf",
        WARN,
        f"The SPF record of {domain} does not name {provider_name} (include:{include}), so mail it "
        "sends may fail SPF and land in spam.",
        hint,
    )


def _dmarc_tags(record: str) -> dict[str, str]:
    tags = {}
    for part in record.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            tags[key.strip().lower()] = value.strip()
    return tags


def _is_dmarc(record: str) -> bool:
    key, _, value = record.split(";", 1)[0].partition("=")
    return key.strip().lower() == "v" and value.strip() == "DMARC1"


def _dmarc_check(domain: str, resolver: DnsLookup) -> Check:
    """The DMARC policy at `_dmarc.<domain>`, or, for a subdomain without one, at its nearest parent
    that has one: receivers apply the organizational domain's policy (RFC 7489 section 6.6.3)."""
    labels = domain.split(".")
    names = [".".join(labels[i:]) for i in range(min(len(labels) - 1, DMARC_PARENT_LOOKUPS + 1))] or [domain]
    for name in names:
        records = resolver.txt(f"_dmarc.{name}")
        if records is None:
            return Check("dmarc", SKIPPED, LOOKUP_FAILED, f"Try again later; _dmarc.{name} did not load.")
        dmarc = [r for r in records if _is_dmarc(r)]
        if len(dmarc) > 1:
            return Check(
                "dmarc",
                WARN,
                f"_dmarc.{name} has {len(dmarc)} DMARC records; receivers then ignore them all. {DMARC_WHY}.",
                f"Keep one TXT record at _dmarc.{name} and delete the others.",
            )
        if dmarc:
            return _dmarc_policy(domain, name, _dmarc_tags(dmarc[0]))
    return Check(
        "dmarc",
        WARN,
        f"{domain} publishes no DMARC record (_dmarc.{domain}). {DMARC_WHY}.",
        f'Add a TXT record at _dmarc.{domain}: "v=DMARC1; p=none; rua=mailto:dmarc@{domain}"',
    )


def _dmarc_policy(domain: str, found_at: str, tags: dict[str, str]) -> Check:
    where = f"_dmarc.{found_at}" + ("" if found_at == domain else f", which covers {domain}")
    policy = (tags.get("sp") if found_at != domain else None) or tags.get("p") or "none"
    if policy.lower() == "none":
        return Check(
            "dmarc",
            PASS,
            f"DMARC is published at {where} with p=none: monitoring only, receivers report mail that "
            "fails but still deliver it.",
            "Once the reports show only your own servers, tighten the policy to p=quarantine.",
        )
    return Check("dmarc", PASS, f"DMARC is published at {where} with p={policy}.")


def _dkim_check(domain: str, preset: Provider | None, ses_dkim: str | None) -> Check:
    """For SES, the identity's DKIM status; elsewhere DKIM is turned on at the provider, where this
    test cannot see it, so the check is skipped with a hint where to look."""
    if ses_dkim is not None:
        return _ses_dkim(domain, ses_dkim.upper())
    where = _dkim_settings(domain, preset)
    return Check(
        "dkim",
        SKIPPED,
        "DKIM signing is set up at the mail provider; this test cannot see whether it is on.",
        f"Check that DKIM signing is on for {domain}: {where}.",
    )


_SES_DKIM = {
    "SUCCESS": (PASS, "Amazon SES signs the mail of {domain} with DKIM."),
    "PENDING": (WARN, "Amazon SES has not yet found the DKIM records of {domain}; it signs once it does."),
    "FAILED": (FAIL, "Amazon SES could not find the DKIM records of {domain}, so its mail is not signed."),
    "TEMPORARY_FAILURE": (
        FAIL,
        "Amazon SES can no longer find the DKIM records of {domain} and has stopped signing its mail.",
    ),
    "NOT_STARTED": (FAIL, "DKIM is not set up for {domain} in Amazon SES, so its mail is not signed."),
}


def _ses_dkim(domain: str, status: str) -> Check:
    page = SES_DKIM_PAGE.format(domain=domain)
    if status not in _SES_DKIM:
        return Check("dkim", SKIPPED, f"Amazon SES reports the DKIM status {status}.", f"See {page}.")
    outcome, detail = _SES_DKIM[status]
    hint = "" if outcome == PASS else f"Publish the DKIM records shown in {page} at the DNS host of {domain}."
    return Check("dkim", outcome, detail.format(domain=domain), hint)


def _dkim_settings(domain: str, preset: Provider | None) -> str:
    """Where the preset's provider turns DKIM signing on."""
    family = preset.id if preset else ""
    if family in ("office365", "outlook"):
        return "Microsoft 365 Defender portal (security.microsoft.com): Email authentication settings > DKIM"
    if family in ("gmail", "gmail_relay"):
        return "Google Admin console: Apps > Google Workspace > Gmail > Authenticate email"
    if family.startswith("ses_smtp_"):
        return SES_DKIM_PAGE.format(domain=domain)
    if preset is not None:
        return f"the DKIM settings of {preset.name}"
    return "the DKIM settings of your mail provider"
