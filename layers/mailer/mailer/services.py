"""The objects a function needs, wired once per container from its configuration.

Every handler shares this one wiring: `services()` makes it on first use, `boot(...)` at cold start
also checks the variables that function needs. Parts are made when first used, so a function
builds only what its routes touch.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, cached_property
from typing import TYPE_CHECKING, Any

from mailer.automations.service import AutomationService
from mailer.config import MailerConfig, OAuthConfig
from mailer.dal import keys
from mailer.dal.bounce_reads import BounceReadStore
from mailer.dal.budget_table import BudgetStore
from mailer.dal.run_schedule import RunScheduleStore
from mailer.dal.secret_store import SecretStore
from mailer.dal.sent_log_table import SentLogStore
from mailer.dal.settings_table import SettingsStore
from mailer.documents.wording import DocumentTemplateService
from mailer.ids import utc_now
from mailer.observability import logger
from mailer.settings.budget import SendingBudgets
from mailer.settings.models import SettingsView
from mailer.settings.oauth import OAuthProviders
from mailer.settings.schedule import SendSchedule
from mailer.settings.service import ProfileRef, SettingsService

if TYPE_CHECKING:
    from mailer.automations.compose import Composer
    from mailer.automations.invoice_planner import InvoiceReminderPlanner
    from mailer.automations.kinds import RecordKind
    from mailer.automations.manual import WorkOrderReminders
    from mailer.automations.planner import ReminderPlanner
    from mailer.automations.statement_planner import StatementPlanner
    from mailer.automations.status import StatusChanges, WorkOrderSync
    from mailer.automations.sweep import ClaimSweep
    from mailer.automations.tick import CompanyRun, Plan, ScheduleTick
    from mailer.automations.worker import OutboxWorker
    from mailer.billing.invoices import InvoiceSync
    from mailer.billing.previews import BillingPreviews
    from mailer.billing.remind import InvoiceReminders
    from mailer.billing.rule_service import InvoiceRuleService
    from mailer.billing.statements import CustomerStatements, StatementScheduleService
    from mailer.dal.attachments_bucket import AttachmentStore
    from mailer.dal.idempotency_table import DynamoDBPersistenceLayer
    from mailer.dal.invoices_table import InvoiceStore
    from mailer.dal.ledger_table import LedgerStore
    from mailer.dal.outbox_queue import OutboxQueue
    from mailer.dal.work_orders_table import WorkOrderStore
    from mailer.documents.events import DocumentAutomationService, DocumentEvents
    from mailer.documents.service import DocumentEmailService
    from mailer.documents.uploads import Uploads
    from mailer.sent_log.queries import SentLogQueries
    from mailer.settings.check import AccountTest
    from mailer.settings.connect import OAuthConnect
    from mailer.suppression.service import Suppressions
    from mailer.tracking.bounces import BounceReader
    from mailer.tracking.opens import OpenPixel, OpenTokens
    from mailer.tracking.service import Tracking


class Services:
    def __init__(self, config: MailerConfig, logger: Any = None) -> None:
        self.config = config
        self.logger = logger
        self.store = SettingsStore(config.settings_table)
        secrets = SecretStore(config.secret_prefix, max_age_seconds=config.secret_max_age_seconds)
        self.oauth_config = OAuthConfig.from_env()
        providers = OAuthProviders(self.oauth_config, secrets, config.extra_ca_bundle)
        budgets = SendingBudgets(BudgetStore(config.budget_table) if config.budget_table else None)
        self.send_schedule = SendSchedule(RunScheduleStore(config.settings_table), config.default_timezone)
        self.settings = SettingsService(
            self.store,
            secrets,
            oauth=providers,
            guard=config.guard,
            budgets=budgets,
            schedule=self.send_schedule,
            bounce_reads=BounceReadStore(config.settings_table),
        )
        self.settings.on_reconnect_required = self._tell_company_to_reconnect
        self.sent_log = SentLogStore(config.sent_log_table, retention_days=config.sent_log_retention_days)
        self.document_templates = DocumentTemplateService(self.store, utc_now)
        self.automations = AutomationService(self.store, utc_now)

    @classmethod
    def from_config(cls, config: MailerConfig, logger: Any = None) -> Services:
        return cls(config, logger)

    # stores a function has only when the template gives it their variable
    @cached_property
    def attachments(self) -> AttachmentStore:
        from mailer.dal.attachments_bucket import AttachmentStore

        bucket = self.config.value("attachments_bucket")
        return AttachmentStore(bucket, url_ttl_seconds=self.config.upload_url_ttl_seconds)

    @cached_property
    def work_orders(self) -> WorkOrderStore:
        from mailer.dal.work_orders_table import WorkOrderStore

        return WorkOrderStore(self.config.value("work_orders_table"))

    @cached_property
    def ledger(self) -> LedgerStore:
        from mailer.dal.ledger_table import LedgerStore

        return LedgerStore(self.config.value("ledger_table"))

    @cached_property
    def outbox(self) -> OutboxQueue:
        from mailer.dal.outbox_queue import OutboxQueue

        return OutboxQueue(self.config.value("outbox_queue_url"))

    @cached_property
    def idempotency(self) -> DynamoDBPersistenceLayer:
        """Where idempotent routes keep their keys and first answers (mailer.idempotency)."""
        from mailer.dal.idempotency_table import idempotency_table

        return idempotency_table(self.config.value("idempotency_table"))

    @cached_property
    def suppressions(self) -> Suppressions:
        """The company's suppression list (settings table): every send path checks it."""
        from mailer.dal.suppressions_table import SuppressionStore
        from mailer.suppression.service import Suppressions

        return Suppressions(SuppressionStore(self.config.settings_table), utc_now)

    @cached_property
    def open_pixel(self) -> OpenPixel | None:
        """The open-tracking pixel, when the stack has a signing key and a public URL to point at."""
        from mailer.tracking.opens import OpenPixel

        if not (self.config.tracking_key_secret and self.config.public_api_url):
            return None
        return OpenPixel(self.open_tokens, self.config.public_api_url)

    @cached_property
    def open_tokens(self) -> OpenTokens:
        from mailer.tracking.opens import OpenTokens

        name = self.config.value("tracking_key_secret")
        secrets = SecretStore(name, max_age_seconds=3600)
        return OpenTokens(lambda: secrets.get(name))

    # use cases
    @cached_property
    def tracking(self) -> Tracking:
        from mailer.tracking.service import Tracking

        tokens = self.open_tokens if self.config.tracking_key_secret else None
        return Tracking(self.sent_log, self.suppressions, utc_now, self.logger, open_tokens=tokens)

    @cached_property
    def bounce_reader(self) -> BounceReader:
        """Bounce reports read from the mailboxes of the profiles with read_bounces on."""
        from mailer.tracking.bounces import BounceReader

        return BounceReader(
            self.settings,
            BounceReadStore(self.config.settings_table),
            self.tracking,
            self.config,
            utc_now,
            self.logger,
        )

    @cached_property
    def oauth_connect(self) -> OAuthConnect:
        from mailer.dal.oauth_states_table import OAuthStateStore
        from mailer.settings.connect import OAuthConnect

        states = OAuthStateStore(self.config.value("oauth_states_table"))
        return OAuthConnect(
            self.settings, states, self.oauth_config.redirect_url, self.oauth_config.allowed_origins
        )

    def _tell_company_to_reconnect(self, ref: ProfileRef, view: SettingsView) -> None:
        """Once per lost connection: the company's notify address hears of it (through the company
        account, so it cannot reach anyone when that account is the one that lost its connection)."""
        from mailer.settings.notices import notice_for_reconnect

        notice_for_reconnect(self.settings, self.config, ref, view, self.logger)

    @cached_property
    def account_test(self) -> AccountTest:
        from mailer.settings.check import AccountTest

        return AccountTest(self.config, self.settings, self.sent_log, self.logger)

    @cached_property
    def documents(self) -> DocumentEmailService:
        from mailer.documents.service import DocumentEmailService

        return DocumentEmailService(
            self.settings,
            self.document_templates,
            self.attachments,
            self.sent_log,
            self.config,
            self.logger,
            outbox=self.outbox if self.config.outbox_queue_url else None,
            suppressions=self.suppressions,
            pixel=self.open_pixel,
        )

    @cached_property
    def document_automations(self) -> DocumentAutomationService:
        """The wording of the confirmations sent on document events, and its previews."""
        from mailer.documents.events import DocumentAutomationService

        return DocumentAutomationService(self.store, self.settings, utc_now)

    @cached_property
    def document_events(self) -> DocumentEvents:
        """Document events raised by the business application, queued for the worker."""
        from mailer.documents.events import DocumentEvents

        return DocumentEvents(self.document_automations, self.attachments, self.outbox, self.config)

    @cached_property
    def uploads(self) -> Uploads:
        from mailer.documents.uploads import Uploads

        return Uploads(self.attachments, self.config)

    @cached_property
    def sent_log_queries(self) -> SentLogQueries:
        from mailer.sent_log.queries import SentLogQueries

        return SentLogQueries(self.sent_log)

    @cached_property
    def work_order_sync(self) -> WorkOrderSync:
        from mailer.automations.status import WorkOrderSync

        return WorkOrderSync(self.work_orders)

    @cached_property
    def composer(self) -> Composer:
        from mailer.automations.compose import Composer

        return Composer(self.config, self.settings, self.automations, self.work_orders)

    @cached_property
    def status_changes(self) -> StatusChanges:
        from mailer.automations.status import StatusChanges

        return StatusChanges(self.automations, self.work_orders, self.outbox)

    @cached_property
    def planner(self) -> ReminderPlanner:
        from mailer.automations.planner import ReminderPlanner

        return ReminderPlanner(
            self.config,
            self.settings,
            self.automations,
            self.work_orders,
            self.ledger,
            self.outbox,
            self.logger,
        )

    def worker(self, remaining_ms: Callable[[], int] | None = None) -> OutboxWorker:
        """A worker for one batch (it keeps the batch's connections and reads); `remaining_ms`, the
        Lambda context's clock, keeps its sends within the invocation."""
        from mailer.automations.worker import OutboxWorker, WorkerDeps

        attachments = self.attachments if self.config.attachments_bucket else None
        deps = WorkerDeps(
            self.config,
            self.settings,
            self.automations,
            self.work_orders,
            self.ledger,
            self.sent_log,
            attachments,
            self.logger,
            outbox=self.outbox if self.config.outbox_queue_url else None,
            kinds=self.record_kinds,
            suppressions=self.suppressions,
            pixel=self.open_pixel,
        )
        return OutboxWorker(deps, remaining_ms)

    @cached_property
    def record_kinds(self) -> dict[str, RecordKind]:
        """The worker's record kinds besides work orders, each where its stores are configured."""
        from mailer.automations.document_email_kind import DocumentEmailKind
        from mailer.automations.document_event_kind import DocumentEventKind
        from mailer.automations.invoice_kind import InvoiceReminderKind
        from mailer.automations.statement_kind import StatementKind

        kinds: dict[str, RecordKind] = {}
        if self.config.invoices_table and self.config.attachments_bucket:
            kinds["invoice_reminder"] = InvoiceReminderKind(
                self.config, self.invoice_rules, self.invoices, self.attachments
            )
            kinds["statement"] = StatementKind(
                self.config, self.statement_schedule, self.invoices, self.attachments
            )
        if self.config.attachments_bucket:
            kinds["document_event"] = DocumentEventKind(
                self.config, self.document_automations, self.settings, self.attachments
            )
            kinds["document_email"] = DocumentEmailKind(self.config, self.sent_log, self.attachments)
        return kinds

    @cached_property
    def schedule_tick(self) -> ScheduleTick:
        from mailer.automations.tick import ScheduleTick
        from mailer.dal.outbox_queue import OutboxQueue

        plans = OutboxQueue(self.config.value("plan_queue_url"))
        return ScheduleTick(self.send_schedule.store, plans, self.logger, adopt=self._adopt_companies)

    def _adopt_companies(self) -> int:
        """Companies with an active automation (the settings' sparse flags) that have no next run."""
        flags = (
            keys.ACTIVE_REMINDER_INDEX_PK,
            keys.ACTIVE_INVOICE_RULE_INDEX_PK,
            keys.ACTIVE_STATEMENT_INDEX_PK,
        )
        tenants = [t for flag in flags for t in self.store.tenants_in_index(flag)]
        return self.send_schedule.adopt(tenants, self._send_time_of)

    def _send_time_of(self, tenant_id: str) -> tuple[str | None, str | None] | None:
        item = self.store.get(tenant_id, keys.settings_sk("company"))
        return None if item is None else (item.get("timezone"), item.get("send_time"))

    @cached_property
    def company_run(self) -> CompanyRun:
        """A company's daily run: its work-order reminders, invoice reminders and statements."""
        from mailer.automations.tick import CompanyRun

        planners: list[tuple[str, Plan]] = [
            ("reminders", self.planner.plan),
            ("invoice_reminders", self.invoice_planner.plan),
            ("statements", self.statement_planner.plan),
        ]
        return CompanyRun(self.settings, self.send_schedule, planners, self.logger)

    @cached_property
    def claim_sweep(self) -> ClaimSweep:
        from mailer.automations.sweep import ClaimSweep

        return ClaimSweep(
            self.config, self.settings, self.work_orders, self.ledger, self.sent_log, self.logger
        )

    # billing: invoices and their reminder rules
    @cached_property
    def invoices(self) -> InvoiceStore:
        from mailer.dal.invoices_table import InvoiceStore

        return InvoiceStore(self.config.value("invoices_table"))

    @cached_property
    def invoice_sync(self) -> InvoiceSync:
        from mailer.billing.invoices import InvoiceSync

        return InvoiceSync(self.invoices, self.ledger)

    @cached_property
    def invoice_rules(self) -> InvoiceRuleService:
        from mailer.billing.rule_service import InvoiceRuleService

        return InvoiceRuleService(self.store, utc_now)

    @cached_property
    def invoice_planner(self) -> InvoiceReminderPlanner:
        from mailer.automations.invoice_planner import InvoiceReminderPlanner

        return InvoiceReminderPlanner(
            self.config,
            self.settings,
            self.invoice_rules,
            self.invoices,
            self.ledger,
            self.outbox,
            self.logger,
        )

    @cached_property
    def invoice_reminders(self) -> InvoiceReminders:
        """Reminders sent on request; their sent-log entries are written as document email's are."""
        from mailer.billing.remind import InvoiceReminders

        return InvoiceReminders(
            self.settings,
            self.invoices,
            self.invoice_rules,
            self.attachments,
            self.config,
            self.documents.keep_entry,
            self.logger,
            self.suppressions,
            self.open_pixel,
        )

    # billing: customers' statements, and the previews of billing email
    @cached_property
    def statement_schedule(self) -> StatementScheduleService:
        from mailer.billing.statements import StatementScheduleService

        return StatementScheduleService(self.store, utc_now)

    @cached_property
    def statement_planner(self) -> StatementPlanner:
        from mailer.automations.statement_planner import StatementPlanner

        return StatementPlanner(
            self.config,
            self.settings,
            self.statement_schedule,
            self.invoices,
            self.ledger,
            self.outbox,
            self.logger,
        )

    @cached_property
    def statements(self) -> CustomerStatements:
        """Statements sent on request; their sent-log entries are written as document email's are."""
        from mailer.billing.statements import CustomerStatements

        return CustomerStatements(
            self.settings,
            self.invoices,
            self.statement_schedule,
            self.attachments,
            self.config,
            self.documents.keep_entry,
            self.logger,
            self.suppressions,
            self.open_pixel,
        )

    @cached_property
    def billing_previews(self) -> BillingPreviews:
        from mailer.billing.previews import BillingPreviews

        return BillingPreviews(
            self.config, self.settings, self.invoice_rules, self.statement_schedule, self.invoices
        )

    @cached_property
    def work_order_reminders(self) -> WorkOrderReminders:
        """Work-order reminders sent on request; their entries are written as document email's are."""
        from mailer.automations.manual import WorkOrderReminders

        return WorkOrderReminders(
            self.settings,
            self.automations,
            self.work_orders,
            self.config,
            self.documents.keep_entry,
            self.logger,
            self.suppressions,
            self.open_pixel,
        )


def make_services() -> Services:
    return Services(MailerConfig.from_env(), logger)


def services() -> Services:
    """What routes depend on (`Wired`); each function's app overrides it with its own container's."""
    raise LookupError("no services are wired: build the app with http_app(..., services=boot())")


def boot(*needs: str) -> Callable[[], Services]:
    """A handler module's wiring, at cold start: the environment is read and checked now, including
    what this function needs (`boot("attachments_bucket")`), so a missing variable fails the start.
    The result is cached for the container; `.cache_clear()` makes a cold one (tests)."""
    import mailer.snapstart  # noqa: F401 - on Lambda, registers what a restored snapshot renews

    provider = cache(make_services)
    provider().config.require(*needs)
    return provider
