"""What `make run` prints once the stack is up: where everything is, and commands to try."""

from __future__ import annotations

import textwrap
from datetime import timedelta

from local import demo_data
from local.banner_billing import billing_help
from local.banner_text import curl as _curl
from local.banner_text import examples as _examples
from local.banner_tracking import queue_help, tracking_help
from local.seed import TENANT, demo_settings
from local.stack import DEMO_DOMAIN, LOCAL_ACCOUNT, LocalStack
from local.stack_config import HOST


def _where(stack: LocalStack) -> list[str]:
    config, url = stack.config, stack.api_url
    trust = (
        f"{stack.ca_bundle} (from your MAILER_EXTRA_CA_BUNDLE; add {stack.tls.ca if stack.tls else ''} "
        "to it, or test sends to the local SMTP server fail with category certificate)"
        if config.operator_ca_bundle
        else f"{stack.ca_bundle} (throwaway CA of this run)"
    )
    workers = (
        f"up to {stack.api_pool.size} worker processes, one request at a time each (LOCAL_API_WORKERS)"
        if stack.api_pool is not None
        else "in this process, one request at a time (LOCAL_API_WORKERS=0)"
    )
    lines = [
        "",
        "Company mail: local stack is running (Ctrl-C to stop)",
        "",
        f"  API            {url}  {workers}",
        f"  Docs           {url}/docs",
        f"  OpenAPI        {url}/openapi.json",
        f"  SMTP server    {HOST}:{stack.smtp_port} with STARTTLS (certificate for localhost and {HOST}),",
        f"                 AUTH user {config.smtp_username} password {config.smtp_password}",
        f"  Mail folder    {config.mail_dir} (one .eml per message)",
        f"  DNS server     {stack.dns.servers if stack.dns else ''} (UDP), asked by the test send's checks"
        " (MAILER_DNS_SERVERS):",
        f"                 {DEMO_DOMAIN} has an SPF record and no DMARC record",
        f"  Handlers trust {trust}",
        f"  moto (AWS)     {stack.moto_url}  e.g. aws --endpoint-url {stack.moto_url} dynamodb list-tables",
    ]
    if config.lambda_log is not None:
        lines += [
            f"  Lambda logs    {config.lambda_log} (LAMBDA_LOG_FILE): the handlers' full JSON logs and",
            "                 metrics, appended; this console shows one line per log record",
        ]
    return [
        *lines,
        "",
        f"  Identity: headers X-Tenant-Id, X-User-Id, X-User-Email, X-User-Groups (comma separated;"
        f" empty = no groups); default tenant {TENANT}, admin, admin@demo.test, groups admin.",
        "",
    ]


def _settings_examples(stack: LocalStack) -> list[tuple[str, str]]:
    url, settings = stack.api_url, demo_settings(stack.config)
    mine = {k: v for k, v in settings.items() if k not in ("timezone", "notify_email", "track_opens")}
    mine |= {"from_name": "Terry Tech", "from_email": "tech@demo.test"}
    wrong = mine | {
        "from_name": settings["from_name"],
        "from_email": settings["from_email"],
        "password": "wrong",
    }
    return [
        ("Provider presets", _curl("GET", f"{url}/providers")),
        (
            "The demo company's settings (password_set, never the password)",
            _curl("GET", f"{url}/settings/company"),
        ),
        (
            "Send a test message with them (it lands in the mail folder, a PDF attached). Its checks:"
            f" spf pass, dmarc warn with the record to add ({DEMO_DOMAIN} publishes no DMARC record)",
            _curl("POST", f"{url}/settings/company/test", {"to": "you@demo.test"}),
        ),
        (
            "Save your own settings as another user (identity comes from the X-User-* headers)",
            _curl(
                "PUT", f"{url}/settings/me", mine, {"X-User-Id": "tech-1", "X-User-Email": "tech@demo.test"}
            ),
        ),
        (
            "Test unsaved settings with a wrong password -> ok: false, category auth_failed, a hint",
            _curl("POST", f"{url}/settings/test", wrong),
        ),
    ]


def _import_failures(stack: LocalStack) -> list[str]:
    functions = stack.functions
    if functions is None:
        return []
    lines = []
    for logical, error in functions.import_errors.items():
        effect = (
            "its routes answer 500"
            if logical in functions.api_functions
            else "its queue's messages fail until the dead-letter queue"
        )
        lines += [f"  !! {logical} failed to import ({effect}; traceback above): {error}"]
    return lines


def banner(stack: LocalStack) -> str:
    lines = _where(stack) + _examples(_settings_examples(stack)) + automated_email_help(stack)
    tracking = tracking_help(stack) + queue_help(stack)
    return "\n".join(lines + billing_help(stack) + tracking + oauth_help(stack) + _import_failures(stack))


def oauth_help(stack: LocalStack) -> list[str]:
    """Connecting the demo company to the local Microsoft and Google, in a browser or with curl."""
    if stack.providers is None:
        return []
    url, env = stack.api_url, stack.oauth_env
    test = _curl("POST", f"{url}/settings/company/test", {"to": "you@demo.test"})
    pick = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"authorization_url\"])'"

    def connect(provider: str, transport: str) -> str:
        started = _curl(
            "POST", f"{url}/oauth/{provider}/start", {"profile": "company", "transport": transport}
        )
        return f'curl -s -L "$({started} | {pick})"'

    lines = [
        f"  Connect accounts with OAuth. Local Microsoft sign-in {env['OAUTH_MICROSOFT_AUTHORIZE_URL']},",
        f"  Graph {env['MICROSOFT_GRAPH_URL']}, Google sign-in {env['OAUTH_GOOGLE_AUTHORIZE_URL']},",
        f"  Gmail API {env['GMAIL_API_URL']}, XOAUTH2 SMTP {env['OAUTH_MICROSOFT_SMTP']} (Microsoft) and",
        f"  {env['OAUTH_GOOGLE_SMTP']} (Google). The sign-in pages consent at once, as {LOCAL_ACCOUNT}; mail",
        "  they accept lands in the mail folder too. Export an OAUTH_* or *_API_URL variable before",
        "  make run to use another endpoint.",
        "",
    ]
    browser = _curl("POST", f"{url}/oauth/microsoft/start", {"profile": "company", "transport": "api"})
    return lines + _examples(
        [
            (
                "In a browser: start, then open the authorization_url it answers (a page says connected)",
                browser,
            ),
            (
                "Or with curl: connect the company to Microsoft 365, then test: it goes through Graph",
                connect("microsoft", "api") + "\n  " + test,
            ),
            (
                "Connect Google with SMTP XOAUTH2 instead, then test through its SMTP server",
                connect("google", "smtp") + "\n  " + test,
            ),
            (
                "Revoke the app at the local Google (its security page), test -> oauth_reconnect_required",
                _curl("POST", f"{stack.providers.google.url}/local/revoke-all") + "\n  " + test,
            ),
        ]
    )


def _automation_examples(stack: LocalStack) -> list[tuple[str, str]]:
    url, today = stack.api_url, stack.demo_today or demo_data.today_in()
    next_week, status = today + timedelta(days=7), f"{url}/work-orders/WO-1001/status"
    return [
        (
            f'Today\'s noon reminder run, now -> {{"queued": {len(demo_data.REMINDED)}}}: '
            f"{', '.join(demo_data.REMINDED)} (run it again: 0)",
            _curl("POST", f"{url}/automations/reminder/run", {}),
        ),
        (
            f"The run of another day: {today + timedelta(days=6)} reminds WO-1004, on {next_week}",
            _curl(
                "POST", f"{url}/automations/reminder/run", {"date": (today + timedelta(days=6)).isoformat()}
            ),
        ),
        (
            "The technician is on the way -> the confirmation email",
            _curl("POST", status, {"status": "en_route"}),
        ),
        ("The job is done -> the thank-you email", _curl("POST", status, {"status": "completed"})),
        (
            "What was sent for WO-1001 (kind automation), and the work order (confirmation_status)",
            _curl("GET", f"{url}/emails?work_order_id=WO-1001")
            + "\n  "
            + _curl("GET", f"{url}/work-orders/WO-1001"),
        ),
        (
            "WO-1005's customer wants texts -> queued: false, with the reason",
            _curl("POST", f"{url}/work-orders/WO-1005/status", {"status": "en_route"}),
        ),
    ]


def _budget_examples(stack: LocalStack) -> list[tuple[str, str]]:
    url, today = stack.api_url, stack.demo_today or demo_data.today_in()
    burst_run = today + timedelta(days=demo_data.BURST_DAYS - 1)
    settings = {k: v for k, v in demo_settings(stack.config).items() if k != "password"}  # kept as saved
    return [
        (
            "Allow the company account 5 emails a minute (null limits: the provider preset's)",
            _curl("PUT", f"{url}/settings/company", settings | {"limits": {"per_minute": 5}}),
        ),
        (
            f"A burst: the run of {burst_run} queues {len(demo_data.BURST)} reminders "
            f"({demo_data.BURST[0]}..{demo_data.BURST[-1]}); 5 are sent now, the other 3 are deferred "
            "to the next minute (the console says `deferred: over the sending budget`) and arrive then",
            _curl("POST", f"{url}/automations/reminder/run", {"date": burst_run.isoformat()}),
        ),
        (
            "The account's usage (last_minute, today) and its limits in effect",
            _curl("GET", f"{url}/settings/company"),
        ),
        (
            "Over budget, an interactive send is refused: 429 with Retry-After, nothing sent",
            _curl("POST", f"{url}/settings/company/test", {"to": "you@demo.test"}),
        ),
    ]


def automated_email_help(stack: LocalStack) -> list[str]:
    url = stack.api_url
    tomorrow = (stack.demo_today or demo_data.today_in()) + timedelta(days=1)
    logged = stack.config.lambda_log is not None  # its records get a line each too
    return [
        "  Automated email: reminder, confirmation and thank-you are active for the demo company, with their",
        f"  default wording (GET/PUT {url}/automations/{{type}}). Work orders WO-1001..WO-1007-2 are synced",
        f"  around tomorrow, {tomorrow} ({demo_data.TIMEZONE}); nothing is sent until you ask:",
        "",
        *_examples(_automation_examples(stack)),
        "  Sending budgets: a limit per minute, per day and on connections, across every worker.",
        "",
        *_examples(_budget_examples(stack)),
        *textwrap.wrap(
            f"The emails land in {stack.mail_dir} (MAIL_DIR), one .eml each; this console prints a line"
            f" per message received{',' if logged else ' and'} per outbox message the worker handled"
            f" (failed ones come back after {stack.config.retry_seconds} s, and go to the dead-letter"
            " queue after the 5th try)" + (" and per handler log record." if logged else "."),
            width=102,
            initial_indent="  ",
            subsequent_indent="  ",
            break_on_hyphens=False,
            break_long_words=False,
        ),
        "",
    ]
