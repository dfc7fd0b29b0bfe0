"""The README's reference tables follow the code."""

from __future__ import annotations

from local.template import ROOT
from mailer.delivery.providers import PROVIDERS, SES_REGIONS

README = (ROOT / "README.md").read_text()


def test_readme_lists_every_provider_preset():
    for provider_id, provider in PROVIDERS.items():
        if provider_id.startswith("ses_smtp_"):
            continue
        assert (
            f"| `{provider_id}` | {provider.name} | {provider.host} | {provider.port} | {provider.security} |"
            in README
        )
    for region in SES_REGIONS:
        assert region in README


def test_readme_lists_every_template_parameter():
    from local.template import Template

    for parameter in Template().body["Parameters"]:
        assert f"`{parameter}`" in README
