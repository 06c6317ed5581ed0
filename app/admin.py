from django.contrib import admin, messages
from django.contrib.admin.utils import display_for_field
from django.db.models import F

from .models import (
    ApiToken,
    DeletionAudit,
    ImportProfile,
    Location,
    PipelineRun,
    PipelineRunSpec,
    PriceHistory,
    Product,
    Reservation,
    StockAlert,
    StockLevel,
    StockMovement,
)
from .services import alerts
from .services.tokens import revoke_token
from .web.forms import ProductForm


class ReadOnlyAdminMixin:
    """History and audit rows are evidence: nobody edits or deletes them, not even admins."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class LowStockFilter(admin.SimpleListFilter):
    title = "stock level"
    parameter_name = "low_stock"

    def lookups(self, request, model_admin):
        return [("yes", "Below threshold"), ("no", "At or above threshold")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(stock__lt=F("low_stock_threshold"))
        if self.value() == "no":
            return queryset.filter(stock__gte=F("low_stock_threshold"))
        return queryset


class PriceHistoryInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = PriceHistory
    fields = ["changed_at", "old_price", "new_price", "changed_by", "source"]
    readonly_fields = fields
    ordering = ["-changed_at", "-id"]
    extra = 0
    max_num = 0


class StockAlertInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = StockAlert
    fields = ["opened_at", "resolved_at", "stock", "threshold", "delivery_status", "attempts"]
    readonly_fields = fields
    extra = 0
    max_num = 0


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductForm  # SKU and name rules as at every entry point (app.core.domain)
    list_display = ["sku", "name", "price", "stock", "low_stock_threshold", "updated_at"]
    list_filter = [LowStockFilter]
    search_fields = ["sku", "name"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [PriceHistoryInline, StockAlertInline]


@admin.register(PriceHistory)
class PriceHistoryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["changed_at", "sku", "name", "old_price", "new_price", "changed_by", "source"]
    list_filter = ["source"]
    search_fields = ["sku", "name"]


@admin.register(StockMovement)
class StockMovementAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "created_at", "sku", "location", "delta", "stock_after", "reason", "changed_by", "source",
    ]  # fmt: skip
    search_fields = ["sku", "reason", "idempotency_key"]


@admin.register(StockAlert)
class StockAlertAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "opened_at",
        "sku",
        "name",
        "stock",
        "threshold",
        "resolved_at",
        "delivery_status",
        "attempts",
    ]
    list_filter = ["delivery_status", ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["sku", "name"]
    actions = ["retry_delivery"]

    def has_change_permission(self, request, obj=None):
        # The changelist needs it for the retry action; a single alert is never editable.
        return obj is None and request.user.has_perm("app.change_stockalert")

    @admin.action(description="Retry delivery of failed alerts", permissions=["change"])
    def retry_delivery(self, request, queryset):
        count = alerts.retry_failed(list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} alert(s) queued for delivery.", messages.SUCCESS)


@admin.register(DeletionAudit)
class DeletionAuditAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["deleted_at", "model_label", "object_pk", "object_repr", "changed_by", "source"]
    search_fields = ["object_repr", "object_pk"]


@admin.register(ImportProfile)
class ImportProfileAdmin(admin.ModelAdmin):
    """Import profiles; ``ImportProfile.clean()`` reports a broken rule on its field."""

    list_display = [
        "name",
        "encoding",
        "delimiter",
        "decimal_separator",
        "header_row",
        "updated_at",
    ]
    search_fields = ["name", "description"]


@admin.register(PipelineRun)
class PipelineRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "id", "name", "status", "user", "dry_run", "mode", "finished_at"]
    list_filter = ["status", "mode"]
    # ``spec`` is kept in a table of its own (``PipelineRunSpec``): named here to be shown,
    # after the run's own fields (all read-only: nobody may change a run).
    readonly_fields = ["spec"]

    @admin.display(description="spec")
    def spec(self, run: PipelineRun) -> str:
        """Shown as a JSON field is (``display_for_field``), as when it was one of the run's."""
        field = PipelineRunSpec._meta.get_field("spec")
        return display_for_field(run.spec, field, self.get_empty_value_display())


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens can be renamed, revoked (an action) and deleted, never re-owned or revived.

    Everyone sees and manages only their own tokens, except superusers and holders of
    ``ALL_TOKENS_PERMISSION``: whoever may change any user can take over any account
    anyway, so managing everybody's tokens gives them nothing more.
    """

    ALL_TOKENS_PERMISSION = "auth.change_user"

    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    fields = ["name", "user", "prefix", "key_hash", "created_at", "last_used_at", "revoked_at"]
    # Everything but the name: an owner or a revocation date edited here would hand a token
    # to another user or revive a revoked one.
    readonly_fields = [name for name in fields if name != "name"]
    actions = ["revoke"]

    def manages_all(self, request) -> bool:
        return request.user.is_superuser or request.user.has_perm(self.ALL_TOKENS_PERMISSION)

    def get_queryset(self, request):
        tokens = super().get_queryset(request).select_related("user")
        return tokens if self.manages_all(request) else tokens.filter(user=request.user)

    def _may_touch(self, request, obj) -> bool:
        return obj is None or obj.user_id == request.user.pk or self.manages_all(request)

    def has_add_permission(self, request, obj=None):
        return False  # tokens are created through the API, where the secret is shown once

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) and self._may_touch(request, obj)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and self._may_touch(request, obj)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and self._may_touch(request, obj)

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request, queryset):
        tokens = list(queryset.filter(revoked_at__isnull=True))
        for token in tokens:
            revoke_token(token)
        self.message_user(request, f"{len(tokens)} token(s) revoked.", messages.SUCCESS)


# --- webhooks ---------------------------------------------------------------------------

from django import forms  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils.html import format_html  # noqa: E402

from .core.domain import validate_webhook_secret  # noqa: E402
from .models import (  # noqa: E402
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from .webhooks import services as webhooks  # noqa: E402


class WebhookSubscriptionForm(forms.ModelForm):
    url = forms.URLField(max_length=500, assume_scheme="https")
    events = forms.MultipleChoiceField(
        choices=WebhookEvent.choices, widget=forms.CheckboxSelectMultiple
    )
    secret = forms.CharField(
        required=False,
        max_length=94,
        validators=[validate_webhook_secret],
        help_text="Shared signing secret in the Standard Webhooks form (whsec_ + base64 of 24 to "
        "64 random bytes); leave empty to generate one. Shown once after saving.",
    )

    class Meta:
        model = WebhookSubscription
        fields = ["name", "url", "events", "is_active", "secret"]


@admin.register(WebhookSubscription)
class WebhookSubscriptionAdmin(admin.ModelAdmin):
    """Secrets are shown once, on creation and rotation (the "Rotate signing secret" action);
    a subscription disabled by a ``410 Gone`` shows when and why, and "Re-enable" (or ticking
    "active") sends what waited meanwhile."""

    form = WebhookSubscriptionForm
    list_display = [
        "__str__",
        "url",
        "event_list",
        "is_active",
        "disabled_at",
        "disabled_reason",
        "pending",
        "dead",
        "deliveries",
    ]
    list_filter = ["is_active"]
    search_fields = ["name", "url"]
    STATE_FIELDS = [
        "disabled_at",
        "disabled_reason",
        "secret_rotated_at",
        "previous_secret_expires_at",
        "signs_x_stockpipe_with",
    ]
    readonly_fields = STATE_FIELDS
    actions = ["rotate_secret", "enable"]

    def get_fields(self, request, obj=None):
        # The secret is set on creation only: it is never shown again.
        if obj is None:
            return ["name", "url", "events", "is_active", "secret"]
        return ["name", "url", "events", "is_active", *self.STATE_FIELDS]

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["fields"] = [f for f in self.get_fields(request, obj) if f not in self.STATE_FIELDS]
        return super().get_form(request, obj, change, **kwargs)

    @admin.display(description="X-Stockpipe-Signature key")
    def signs_x_stockpipe_with(self, obj):
        if obj.legacy_secret:
            return "the secret of before the standard form (migration 0006), until a rotation"
        return "the secret string (UTF-8 bytes)"

    def save_model(self, request, obj, form, change):
        if change:  # through the service: it records (or clears) why it was deactivated
            stored = WebhookSubscription.objects.get(pk=obj.pk)
            changes = {name: form.cleaned_data[name] for name in form.changed_data}
            webhooks.update_subscription(stored, **changes)
            return
        obj.secret = form.cleaned_data.get("secret") or webhooks.new_secret()
        super().save_model(request, obj, form, change)
        self.message_user(
            request,
            f"Signing secret of {obj} (copy it now, it is not shown again): {obj.secret}",
            messages.WARNING,
        )

    @admin.action(
        description="Rotate signing secret (the old one stays valid for the overlap)",
        permissions=["change"],
    )
    def rotate_secret(self, request, queryset):
        for subscription in queryset:
            webhooks.rotate_secret(subscription)
            until = subscription.previous_secret_expires_at
            self.message_user(
                request,
                f"New signing secret of {subscription} (copy it now, it is not shown again): "
                f"{subscription.secret}"
                + (
                    f" (the previous one also signs until {until:%Y-%m-%d %H:%M:%S %Z})"
                    if until
                    else ""
                ),
                messages.WARNING,
            )

    @admin.action(description="Re-enable selected (send what waited)", permissions=["change"])
    def enable(self, request, queryset):
        subscriptions = list(queryset.filter(is_active=False))
        for subscription in subscriptions:
            webhooks.enable_subscription(subscription)
        self.message_user(
            request, f"{len(subscriptions)} subscription(s) enabled.", messages.SUCCESS
        )

    @admin.display(description="events")
    def event_list(self, obj):
        return ", ".join(obj.events or [])

    def _count(self, obj, status):
        return obj.deliveries.filter(status=status).count()

    @admin.display(description="pending")
    def pending(self, obj):
        return self._count(obj, WebhookDelivery.Status.PENDING)

    @admin.display(description="dead")
    def dead(self, obj):
        return self._count(obj, WebhookDelivery.Status.DEAD)

    @admin.display(description="deliveries")
    def deliveries(self, obj):
        url = reverse("admin:app_webhookdelivery_changelist")
        return format_html('<a href="{}?subscription__id__exact={}">view</a>', url, obj.pk)


class WebhookAttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = WebhookAttempt
    fields = ["number", "attempted_at", "status_code", "error", "duration_ms", "response_body"]
    readonly_fields = fields
    extra = 0
    max_num = 0


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "created_at",
        "event_type",
        "stream",
        "subscription",
        "status",
        "attempts",
        "last_status_code",
        "delivered_at",
    ]
    list_filter = ["status", "event_type", "subscription"]
    search_fields = ["event_id", "stream"]
    readonly_fields = [
        "subscription",
        "event_id",
        "event_type",
        "stream",
        "data",
        "created_at",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "delivered_at",
    ]
    inlines = [WebhookAttemptInline]
    actions = ["redeliver"]

    def has_change_permission(self, request, obj=None):
        # The changelist needs it for the redeliver action; a delivery is never editable.
        return obj is None and request.user.has_perm("app.change_webhookdelivery")

    @admin.action(
        description="Redeliver selected (dead-lettered or delivered)", permissions=["change"]
    )
    def redeliver(self, request, queryset):
        count = webhooks.redeliver(list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{count} delivery(ies) queued again.", messages.SUCCESS)


@admin.register(Location)
class LocationAdmin(admin.ModelAdmin):
    """Locations are deactivated, never deleted (the ledger names them)."""

    list_display = ["code", "name", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["code", "name"]

    def get_readonly_fields(self, request, obj=None):
        return ["code", "created_at"] if obj is not None else ["created_at"]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(StockLevel)
class StockLevelAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Evidence: levels change only through stock moves (the levels effect, transfers)."""

    list_display = ["product", "location", "quantity", "low_stock_threshold"]
    list_filter = ["location"]
    search_fields = ["product__sku"]
    list_select_related = ["product", "location"]


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Evidence: reservations change only through the reservation service (API)."""

    list_display = [
        "id", "sku", "location", "quantity", "reference", "status", "expires_at", "created_at",
        "ended_at", "changed_by", "source",
    ]  # fmt: skip
    list_filter = ["status", "location"]
    search_fields = ["sku", "reference", "idempotency_key"]
    list_select_related = ["location", "changed_by"]
