"""4. Cold start and memory of every function in template.yaml.

Import: each function's handler module imported in a fresh interpreter (sys.path as Lambda lays it
out: the function's code, then the layer), timed around the import only, against `import boto3` in a
fresh interpreter; the targets alternate round by round and the median of the runs is kept.
"As deployed" means Tracing: Active, so Powertools' Tracer imports aws_xray_sdk and patches botocore:
LAMBDA_TASK_ROOT is set and POWERTOOLS_TRACE_DISABLED is not (the tests and local stack disable it).

Memory: one invocation of each handler in a fresh interpreter (peak RSS from getrusage), against a moto
server in this process (so moto's own memory is not counted) and the loopback SMTP sink; the document
email carries a 10 MB PDF, and is invoked once more with a 20 MB one (the largest attachment the
template's AttachmentMaxBytes default takes). Run alone: python -m bench.cold_start
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    TOMORROW,
    Report,
    TlsFiles,
    fmt,
    pdf_bytes,
    seed_work_orders,
    setup_tenant,
    table,
    work_order_body,
)
from bench.smtp_sink import SinkServer

LAYER = ROOT / "layers" / "mailer"
LOOPBACK = "127.0.0.1/32,::1/128"
OAUTH_APP = {
    "OAUTH_MICROSOFT_CLIENT_ID": "bench-client",
    "OAUTH_MICROSOFT_CLIENT_SECRET": "bench-client-secret",
    "OAUTH_REDIRECT_URL": "http://127.0.0.1:3000/oauth/callback",
}  # the sink listens on loopback, which the address guard admits when told
TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
PDF_SIZE = 10 * 1024 * 1024
LARGE_PDF_SIZE = 20 * 1024 * 1024
LARGE_DOCUMENT = "DocumentEmailFunction, 20 MB PDF"  # a second invocation of the document email
LARGE_PEAK_MB = 180  # the target for it

# The child: nothing imported before the clock starts but what the interpreter itself needs.
IMPORT_CHILD = """\
import sys, time
sys.path[:0] = {paths!r}
started = time.perf_counter()
import {module}
seconds = time.perf_counter() - started
import json
print(json.dumps({{"seconds": seconds}}))
"""

# Peak RSS of this process's own address space. getrusage's ru_maxrss is not used alone: on Linux a
# child started by fork+exec inherits the parent's high-water mark (here, the moto server's process).
PEAK_RSS = """\
def peak_rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
"""

INVOKE_CHILD = (
    PEAK_RSS
    + """\
import sys, time
sys.path[:0] = {paths!r}
started = time.perf_counter()
import app
imported = time.perf_counter() - started
import json, resource, uuid
with open({event!r}) as f:
    event = json.load(f)

class Context:
    function_name = {name!r}
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + {name!r}
    aws_request_id = str(uuid.uuid4())
    def get_remaining_time_in_millis(self):
        return 30000

started = time.perf_counter()
response = app.lambda_handler(event, Context())
invoked = time.perf_counter() - started
with open({result!r}, "w") as f:
    json.dump({{"import_s": imported, "invoke_s": invoked, "response": response, "peak_kb": peak_rss_kb(),
               "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}, f, default=str)
"""
)

BASELINE_CHILD = (
    PEAK_RSS
    + """\
import sys, json
sys.path[:0] = {paths!r}
import boto3
boto3.client("dynamodb", region_name="us-east-1")
print(json.dumps({{"peak_kb": peak_rss_kb()}}))
"""
)


def base_environment() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        POWERTOOLS_METRICS_NAMESPACE="CompanyMailBench",
        PYTHONDONTWRITEBYTECODE="",
    )
    return env


def function_env(template: Any, logical: str, *, traced: bool) -> dict[str, str]:
    env = base_environment() | template.function_environment(logical) | {"MAILER_ALLOWED_NETWORKS": LOOPBACK}
    env |= OAUTH_APP  # an app registration, so the OAuth start can be invoked (it calls no provider)
    path, _ = template.handler_path(logical)
    if traced:  # what Lambda sets; Powertools then keeps tracing on and X-Ray patches botocore
        env.update(
            LAMBDA_TASK_ROOT=str(path.parent),
            AWS_LAMBDA_FUNCTION_NAME=logical,
            AWS_EXECUTION_ENV="AWS_Lambda_python3.13",
            _X_AMZN_TRACE_ID=TRACE_HEADER,
            AWS_XRAY_DAEMON_ADDRESS="127.0.0.1:2000",  # loopback: the segments go nowhere
            AWS_XRAY_CONTEXT_MISSING="IGNORE_ERROR",
        )
    else:
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
    return env


def _child(
    code: str, env: dict[str, str], cwd: Path, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *extra, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def import_targets(template: Any) -> dict[str, tuple[str, list[str], dict[str, str], Path]]:
    """label -> (module, sys.path entries, environment, working directory)."""
    targets: dict[str, tuple[str, list[str], dict[str, str], Path]] = {
        "import boto3 (baseline)": ("boto3", [str(LAYER)], base_environment(), ROOT),
        # What the OAuth connection adds, alone: the OAuth client library, and the HTTPS client of
        # Graph and Gmail (already imported by botocore, so free in a handler).
        "import oauthlib.oauth2 (OAuth client)": ("oauthlib.oauth2", [str(LAYER)], base_environment(), ROOT),
        "import urllib3 (Graph, Gmail)": ("urllib3", [str(LAYER)], base_environment(), ROOT),
    }
    for logical in template.functions():
        path, _ = template.handler_path(logical)
        paths = [str(path.parent), str(LAYER)]
        targets[logical] = ("app", paths, function_env(template, logical, traced=True), path.parent)
    worker, _ = template.handler_path("EmailWorkerFunction")
    targets["EmailWorkerFunction, tracing disabled (as tests run)"] = (
        "app",
        [str(worker.parent), str(LAYER)],
        function_env(template, "EmailWorkerFunction", traced=False),
        worker.parent,
    )
    return targets


def measure_imports(template: Any, runs: int) -> dict[str, list[float]]:
    targets = import_targets(template)
    seconds: dict[str, list[float]] = defaultdict(list)
    names = list(targets)
    for index in range(runs + 1):  # the first round warms the page cache and writes .pyc files
        shift = index % len(names)
        for label in names[shift:] + names[:shift]:
            module, paths, env, cwd = targets[label]
            done = _child(IMPORT_CHILD.format(paths=paths, module=module), env, cwd)
            if done.returncode != 0:
                raise RuntimeError(f"importing {label} failed:\n{done.stderr[-2000:]}")
            if index:
                seconds[label].append(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
    return seconds


def import_profile(template: Any, logicals: list[str]) -> dict[str, dict[str, float]]:
    """-X importtime, one run per function: self time summed by top-level package, in ms."""
    targets = import_targets(template)
    found: dict[str, dict[str, float]] = {}
    for logical in logicals:
        module, paths, env, cwd = targets[logical]
        done = _child(IMPORT_CHILD.format(paths=paths, module=module), env, cwd, ("-X", "importtime"))
        totals: dict[str, float] = defaultdict(float)
        for line in done.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, _cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
            top = name.split(".")[0]
            totals["mailer (the layer)" if top == "mailer" else top] += int(self_us) / 1000
        found[logical] = dict(totals)
    return found


# --- memory ---------------------------------------------------------------------------------------------


def _api_event(method: str, path: str, route: str, body: Any, **params: str) -> dict[str, Any]:
    from local.events import HttpRequest, http_event

    return http_event(
        HttpRequest(
            method=method,
            path=path,
            route=route,
            path_parameters=params,
            body=None if body is None else json.dumps(body),
        )
    )


def prepare_invocations(
    template: Any, sink: SinkServer, tls: TlsFiles, tmp: Path
) -> dict[str, dict[str, Any]]:
    """State on the moto server and one event per function."""
    import boto3

    from bench.common import company_settings, function_environment
    from mailer.config import MailerConfig
    from mailer.dal.attachments_bucket import DECLARED_SIZE
    from mailer.ids import new_id
    from mailer.services import Services

    tenant = "demo"  # local.events.ADMIN's tenant
    function_environment(template)
    os.environ["MAILER_EXTRA_CA_BUNDLE"] = tls.ca_bundle
    session = boto3.Session(region_name="us-east-1")
    template.create_all(session)
    services = Services.from_config(MailerConfig.from_env(), None)
    setup_tenant(services, tenant, sink.port)
    seed_work_orders(
        os.environ["WORK_ORDERS_TABLE"], tenant, (work_order_body(f"WO-{n:05d}", TOMORROW) for n in range(10))
    )
    uploads = {}
    for size in (PDF_SIZE, LARGE_PDF_SIZE):
        uploads[size] = new_id()
        session.client("s3").put_object(
            Bucket=template.names.ref("AttachmentsBucket"),
            Key=f"{tenant}/{uploads[size]}/INV-1001.pdf",
            Body=pdf_bytes(size),
            ContentType="application/pdf",
            Metadata={DECLARED_SIZE: str(size)},  # as the signed upload records it
        )
    invoice = {
        "type": "invoice",
        "number": "INV-1001",
        "customer_name": "Dana Whitfield",
        "amount": "1250.00",
        "currency": "USD",
        "due_date": "2026-12-01",
    }
    records = [
        {
            "messageId": f"00000000-0000-0000-0000-{n:012d}",
            "receiptHandle": f"handle-{n}",
            "body": json.dumps(
                {
                    "tenant_id": tenant,
                    "automation": "reminder",
                    "work_order_id": f"WO-{n:05d}",
                    "occurrence": TOMORROW.isoformat(),
                }
            ),
            "attributes": {"ApproximateReceiveCount": "1"},
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": template.names.attribute("OutboxQueue", "Arn"),
            "awsRegion": "us-east-1",
        }
        for n in range(10)
    ]
    plan_records = [
        {
            "messageId": "00000000-0000-0000-0001-000000000000",
            "receiptHandle": "plan-handle",
            "body": json.dumps({"tenant_id": tenant, "date": TOMORROW.isoformat()}),
            "attributes": {"ApproximateReceiveCount": "1"},
            "messageAttributes": {},
            "md5OfBody": "",
            "eventSource": "aws:sqs",
            "eventSourceARN": template.names.attribute("PlanQueue", "Arn"),
            "awsRegion": "us-east-1",
        }
    ]
    work_order = work_order_body("WO-90000", TOMORROW)
    del work_order["id"], work_order["updated_at"]
    events = {
        "SettingsFunction": _api_event(
            "PUT", "/settings/company", "/settings/{profile}", company_settings(sink.port), profile="company"
        ),
        "TestSendFunction": _api_event(
            "POST",
            "/settings/company/test",
            "/settings/{profile}/test",
            {"to": "owner@acme.example"},
            profile="company",
        ),
        **{
            label: _api_event(
                "POST",
                "/documents/email",
                "/documents/email",
                {
                    "document": invoice,
                    "to": ["dana@customer.example"],
                    "attachments": [{"upload_id": upload}],
                },
            )
            for label, upload in (
                ("DocumentEmailFunction", uploads[PDF_SIZE]),
                (LARGE_DOCUMENT, uploads[LARGE_PDF_SIZE]),
            )
        },
        "WorkOrdersFunction": _api_event(
            "PUT",
            "/work-orders/WO-90000",
            "/work-orders/{work_order_id}",
            work_order,
            work_order_id="WO-90000",
        ),
        "OAuthFunction": _api_event(
            "POST",
            "/oauth/microsoft/start",
            "/oauth/{provider}/start",
            {"profile": "company", "transport": "api"},
            provider="microsoft",
        ),
        "ScheduleTickFunction": {"scheduled_time": "2026-11-23T18:00:00Z"},
        "CompanyPlannerFunction": {"Records": plan_records},
        "ClaimSweepFunction": {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events"},
        "EmailWorkerFunction": {"Records": records},
    }
    paths = {}
    for label, event in events.items():
        paths[label] = tmp / f"{label.split(',')[0]}{len(paths)}.event.json"
        paths[label].write_text(json.dumps(event))
    return {k: {"event": str(v), "function": k.split(",")[0]} for k, v in paths.items()}


def _succeeded(logical: str, response: Any) -> bool:
    if isinstance(response, dict) and "statusCode" in response:
        return 200 <= int(response["statusCode"]) < 300
    if logical in ("EmailWorkerFunction", "CompanyPlannerFunction"):
        return response.get("batchItemFailures") == []
    return isinstance(response, dict)


def measure_memory(template: Any, tmp: Path, traced: bool) -> dict[str, dict[str, Any]]:
    from moto.server import ThreadedMotoServer

    from local.smtp_server import free_port

    results: dict[str, dict[str, Any]] = {}
    tls = TlsFiles.create(tmp)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    saved = dict(os.environ)
    try:
        os.environ.update(
            AWS_ENDPOINT_URL=f"http://{host}:{port}",
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
        from mailer.dal import clients as aws_clients

        aws_clients.reset()
        with SinkServer(tls) as sink:
            invocations = prepare_invocations(template, sink, tls, tmp)
            invoked = {spec["function"] for spec in invocations.values()}
            for logical in sorted(set(template.functions()) - invoked):
                results[logical] = {"no_event": True}  # listed as not measured
            for label, spec in invocations.items():
                logical = spec["function"]
                path, _ = template.handler_path(logical)
                env = function_env(template, logical, traced=traced) | {
                    "AWS_ENDPOINT_URL": f"http://{host}:{port}",
                    "MAILER_EXTRA_CA_BUNDLE": tls.ca_bundle,
                }
                result_path = tmp / f"{Path(spec['event']).stem}.result.json"
                code = INVOKE_CHILD.format(
                    paths=[str(path.parent), str(LAYER)],
                    event=spec["event"],
                    name=logical,
                    result=str(result_path),
                )
                before = sink.count
                done = _child(code, env, path.parent)
                if done.returncode != 0 or not result_path.exists():
                    raise RuntimeError(f"invoking {label} failed:\n{done.stderr[-3000:]}")
                result = json.loads(result_path.read_text())
                result["sent"] = sink.count - before
                result["ok"] = _succeeded(logical, result["response"])
                results[label] = result
            baseline = _child(BASELINE_CHILD.format(paths=[str(LAYER)]), base_environment(), ROOT)
            results["import boto3 + one client (baseline)"] = json.loads(
                baseline.stdout.strip().splitlines()[-1]
            )
    finally:
        os.environ.clear()
        os.environ.update(saved)
        moto.stop()
    return results


# --- the benchmark ---------------------------------------------------------------------------------------


def run(runs: int = 7, report: Report | None = None) -> Report:
    from local.template import Template

    report = report or Report("4. cold start and memory")
    template = Template()
    seconds = measure_imports(template, runs)
    boto3_median = statistics.median(seconds["import boto3 (baseline)"])
    rows = []
    worst = 0.0
    for label, values in seconds.items():
        median = statistics.median(values)
        ratio = median / boto3_median
        if label in template.functions():
            worst = max(worst, ratio)
        rows.append([label, fmt(median * 1000, 0), fmt(min(values) * 1000, 0), fmt(ratio)])
    report.add(
        table(
            f"4. Import time of the handler module in a fresh interpreter, as deployed (tracing on); "
            f"median of {runs} interleaved runs",
            ["module", "median ms", "best ms", "x import boto3"],
            rows,
        )
    )
    report.judge("handler import <= 2.2x import boto3 (worst function)", f"{worst:.2f}x", worst <= 2.2)

    functions = list(template.functions())
    profile = import_profile(template, functions)
    packages: dict[str, float] = defaultdict(float)
    for totals in profile.values():
        for package, ms in totals.items():
            packages[package] = max(packages[package], ms)
    top = sorted(packages, key=lambda p: -packages[p])[:12]
    short = {f: f.removesuffix("Function") for f in functions}
    report.add(
        table(
            "4. Where import time goes: -X importtime self time summed by top-level package, ms "
            "(one run each, indicative)",
            ["package", *short.values()],
            [[p, *(fmt(profile[f].get(p, 0.0), 0) for f in functions)] for p in top]
            + [["all", *(fmt(sum(profile[f].values()), 0) for f in functions)]],
        )
    )

    with tempfile.TemporaryDirectory() as tmp:
        memory = measure_memory(template, Path(tmp), traced=True)
    mem_rows = []
    worst_rss = 0.0
    for label, result in memory.items():
        if result.get("no_event"):
            mem_rows.append([label, "", "", "", "", "not measured: benchmark 4 has no event for it"])
            continue
        rss = result["peak_kb"] / 1024
        if label in template.functions() or label == LARGE_DOCUMENT:
            if label != LARGE_DOCUMENT:
                worst_rss = max(worst_rss, rss)
            ok = "ok" if result["ok"] else f"FAILED {str(result['response'])[:60]}"
            mem_rows.append(
                [
                    label,
                    fmt(rss, 1),
                    fmt(result["import_s"] * 1000, 0),
                    fmt(result["invoke_s"] * 1000, 0),
                    result["sent"],
                    ok,
                ]
            )
        else:
            mem_rows.append([label, fmt(rss, 1), "", "", "", ""])
    report.add(
        table(
            "4. One invocation per function in a fresh interpreter (tracing on, moto server, SMTP sink); "
            "document email with a 10 MB PDF, and once more with a 20 MB one",
            ["function", "peak RSS MB", "import ms", "first invoke ms", "mails sent", "result"],
            mem_rows,
        )
    )
    failed = [k for k, v in memory.items() if "ok" in v and not v["ok"]]
    report.judge("peak RSS < 128 MB (worst function)", f"{worst_rss:.1f} MB", worst_rss < 128)
    if LARGE_DOCUMENT in memory:
        large = memory[LARGE_DOCUMENT]["peak_kb"] / 1024
        report.judge(
            f"document email, 20 MB PDF: peak RSS <= {LARGE_PEAK_MB} MB",
            f"{large:.1f} MB",
            large <= LARGE_PEAK_MB,
        )
        report.figures["document_20mb_rss_mb"] = large
    if failed:
        report.judge("every handler invocation succeeded", ", ".join(failed), False)
    report.figures["worst_import_ratio"] = worst
    report.figures["worst_rss_mb"] = worst_rss
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    run(args.runs)


if __name__ == "__main__":
    main()
