"""Inventory models.

``Product`` remembers the values it was loaded with, so a save knows the old price and
stock without a SELECT; its default manager routes bulk writes through the same change
tracking as ``save()`` (see ``app.models.writes``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import DatabaseError, connections, models, router, transaction
from django.db.models import Q, Value

from .. import conf
from ..core.domain import (
    MAX_STOCK,
    NAME_MAX_LENGTH,
    SKU_MAX_LENGTH,
    check_product_rules,
    validate_name,
    validate_sku,
)
from ..core.encoding import FastJSONEncoder
from . import writes  # the write paths; app.models imports them first (see __init__)
from .querysets import ProductQuerySet

TRACKED_FIELDS = ("price", "stock", "low_stock_threshold")
# MAX_STOCK (re-exported by app.models) lives with the other field rules in app.core.domain.


def default_low_stock_threshold() -> int:
    return conf.low_stock_threshold()


class _Confirmation:
    """An on_commit callback marking a save's written values as stored for good."""

    __slots__ = ("confirmed", "names")

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.confirmed = False

    def __call__(self) -> None:
        self.confirmed = True


class Product(models.Model):
    # Field rules: app.core.domain (the API, pipelines and forms use the same functions).
    sku = models.CharField(max_length=SKU_MAX_LENGTH, unique=True, validators=[validate_sku])
    name = models.CharField(max_length=NAME_MAX_LENGTH, validators=[validate_name])
    price = models.DecimalField(max_digits=12, decimal_places=2, validators=[MinValueValidator(0)])
    stock = models.IntegerField(
        default=0, validators=[MinValueValidator(0), MaxValueValidator(MAX_STOCK)]
    )
    low_stock_threshold = models.PositiveIntegerField(
        default=default_low_stock_threshold, validators=[MaxValueValidator(MAX_STOCK)]
    )
    # Units held by active reservations (status active, due or not): moved only by
    # app.services.reservations, with conditional UPDATEs in the transaction of each
    # transition, so a hold checks availability without summing the holds.
    reserved = models.IntegerField(default=0, db_default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProductQuerySet.as_manager()

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.CheckConstraint(condition=Q(price__gte=0), name="product_price_non_negative"),
            models.CheckConstraint(condition=Q(stock__gte=0), name="product_stock_non_negative"),
            models.CheckConstraint(
                condition=Q(reserved__gte=0), name="product_reserved_non_negative"
            ),
        ]
        # The product list's sorts: keyset pages over (column, id) (app.selectors.catalogue);
        # SKU's own unique index serves the SKU sort. The partial index finds low-stock rows.
        indexes = [
            models.Index(fields=["name", "id"], name="product_name_id"),
            models.Index(fields=["price", "id"], name="product_price_id"),
            models.Index(fields=["stock", "id"], name="product_stock_id"),
            models.Index(fields=["updated_at", "id"], name="product_updated_id"),
            models.Index(
                fields=["id"],
                condition=Q(stock__lt=models.F("low_stock_threshold")),
                name="product_low_stock",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"

    @property
    def is_low_stock(self) -> bool:
        return self.stock < self.low_stock_threshold

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._loaded = dict(zip(field_names, values, strict=True))
        return instance

    def refresh_from_db(self, using=None, fields=None, from_queryset=None) -> None:
        """Django's refresh, and the refreshed values become the loaded ones (a deferred
        field's first access comes here too)."""
        if fields is None:
            deferred = self.get_deferred_fields()
            names = [f.attname for f in self._meta.concrete_fields if f.attname not in deferred]
        else:
            names = [
                f.attname
                for f in self._meta.concrete_fields
                if f.attname in fields or f.name in fields
            ]
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)
        loaded = getattr(self, "_loaded", None)
        if loaded is None:
            loaded = self._loaded = {}
        values = self.__dict__
        for name in names:
            if name in values:
                loaded[name] = values[name]

    def changed_fields(self) -> list[str]:
        """Fields whose value differs from the loaded one, or that hold a value whose stored
        counterpart is not known (assigned after a deferred load, an ``F()`` expression,
        written by a save whose transaction rolled back)."""
        self._forget_rolled_back()
        loaded = getattr(self, "_loaded", None) or {}
        values = self.__dict__
        return [
            f.attname
            for f in self._meta.concrete_fields
            if not f.primary_key
            and f.attname in values
            and (f.attname not in loaded or loaded[f.attname] != values[f.attname])
        ]

    def remember_current_values(self, attnames=None, *, using: str | None = None) -> None:
        """Take the current values (of ``attnames``, default all) as the loaded ones.

        Fields holding an expression (``F()``) are forgotten: their stored value is unknown.
        Inside a transaction (``using`` given and a block is open) the write is remembered
        as unconfirmed until it commits: should it roll back, ``changed_fields`` forgets the
        values again, so the next ``save()`` writes them instead of taking them for stored.
        """
        remember_written([self], attnames, using=using)

    def _take_current_values(self, attnames) -> list[str]:
        """The loaded values become the current ones; returns the names taken."""
        values = self.__dict__
        if attnames is None:
            attnames = [f.attname for f in self._meta.concrete_fields]
            self._loaded = {}
        loaded = getattr(self, "_loaded", None)
        if loaded is None:
            loaded = self._loaded = {}
        written = []
        for name in attnames:
            value = values.get(name, loaded)
            if value is loaded:  # deferred: not loaded
                continue
            if hasattr(value, "resolve_expression"):
                loaded.pop(name, None)
            else:
                loaded[name] = value
                written.append(name)
        self._before_write = None
        return written

    def _forget_rolled_back(self) -> None:
        """Drop the loaded values of writes whose transaction rolled back: their commit
        callback neither ran nor is still pending (Django discards it on rollback)."""
        unconfirmed = self.__dict__.get("_unconfirmed")
        if not unconfirmed:
            return
        still = []
        for alias, confirmation in unconfirmed:
            if confirmation.confirmed:
                continue
            pending = connections[alias].run_on_commit
            if any(callback is confirmation for _, callback, _ in pending):
                still.append((alias, confirmation))
                continue
            loaded = getattr(self, "_loaded", None) or {}
            for name in confirmation.names:
                loaded.pop(name, None)
        self._unconfirmed = still

    def save(self, *args, **kwargs) -> None:
        """Django's save(), writing only the fields that changed (``changed_fields``), so a
        stale instance cannot undo a concurrent change to a field it did not change."""
        # SKU and name rules (app.core.domain); a legacy row's unchanged values pass.
        check_product_rules(self, kwargs.get("update_fields"))
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        self.__dict__.pop("_row_gone", None)  # set by _do_update for this save only
        loaded = getattr(self, "_loaded", None)
        narrowed = (
            kwargs.get("update_fields") is None
            and not args
            and not self._state.adding
            and self.pk is not None
            and loaded is not None
            # A new primary key targets another row: Django writes every field there.
            and loaded.get(self._meta.pk.attname, self.pk) == self.pk
            and not kwargs.get("force_insert")
        )
        if narrowed:
            kwargs["update_fields"] = [*self.changed_fields(), "updated_at"]
        try:
            with transaction.atomic(using=using):
                try:
                    super().save(*args, **kwargs)
                except DatabaseError:
                    if not (narrowed and self.__dict__.pop("_row_gone", False)):
                        raise
                    # The row was deleted: plain Django's save() inserts it again. Django
                    # refused only because of update_fields; no statement failed.
                    connections[using].needs_rollback = False
                    kwargs["update_fields"] = None
                    super().save(*args, **kwargs)
        finally:
            # Fields saved as expressions (F("stock") - 1), and tracked fields the save left
            # out, hold their stored value while post_save runs (guarded_update); afterwards
            # the instance's own value again, as with plain Django.
            for name, value in (self.__dict__.pop("_restore", None) or {}).items():
                setattr(self, name, value)
        update_fields = kwargs.get("update_fields")
        if update_fields is None:
            self.remember_current_values(using=using)
        else:
            meta = self._meta
            attnames = [meta.get_field(name).attname for name in update_fields]
            self.remember_current_values(attnames, using=using)

    def delete(self, using=None, keep_parents=False):
        """Django's delete(), once an open change batch has run the effects of the changes
        it collected (``writes.flush_collected``): the collector may load related rows."""
        writes.flush_collected()
        return super().delete(using=using, keep_parents=keep_parents)

    delete.alters_data = True

    def _do_insert(self, manager, using, fields, returning_fields, raw):
        # A row written anew holds nothing: holds are counted when made. A stale instance
        # saved after its row was deleted (the holds were detached then) must not bring
        # its old count back, which nothing would ever release.
        self.reserved = 0
        return super()._do_insert(manager, using, fields, returning_fields, raw)

    def _do_update(self, base_qs, using, pk_val, values, update_fields, forced_update):
        if update_fields is None or "reserved" not in update_fields:
            # Held units move only with the holds (app.services.reservations, in SQL): a
            # save of an instance read before a hold, or built by hand for an existing
            # row, must not write its stale count back and let stock be sold twice.
            values = [value for value in values if value[0].attname != "reserved"]
        if not values:
            return super()._do_update(base_qs, using, pk_val, values, update_fields, forced_update)
        updated = writes.guarded_update(self, base_qs, pk_val, values)
        if not updated and update_fields is not None:
            self._row_gone = True
        return updated


def remember_written(objs: Iterable[Product], attnames=None, *, using: str | None = None) -> None:
    """``remember_current_values`` of many products written together, with one commit
    callback per set of written names rather than one per product (a bulk write of a
    million rows would otherwise hold a million callbacks until it commits)."""
    in_transaction = using is not None and connections[using].in_atomic_block
    shared: dict[tuple[str, ...], _Confirmation] = {}
    for obj in objs:
        written = obj._take_current_values(attnames)
        if not (in_transaction and written):
            continue
        key = tuple(written)
        confirmation = shared.get(key)
        if confirmation is None:
            confirmation = shared[key] = _Confirmation(written)
            transaction.on_commit(confirmation, using=using)
        obj.__dict__.setdefault("_unconfirmed", []).append((using, confirmation))


class ChangeSource(models.Model):
    """Who and what made a change: the user (if known) and the entry point."""

    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=100, default="shell")

    class Meta:
        abstract = True


class PriceHistory(ChangeSource):
    product = models.ForeignKey(
        Product,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="price_history",
        db_index=False,  # pricehistory_product_time (product, changed_at, id) serves it
    )
    sku = models.CharField(max_length=64, db_index=True)
    name = models.CharField(max_length=200)
    old_price = models.DecimalField(max_digits=12, decimal_places=2)
    new_price = models.DecimalField(max_digits=12, decimal_places=2)
    changed_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-changed_at", "-id"]
        verbose_name_plural = "price history"
        # With the id last, in the order they are shown. The included columns are what the
        # product page (chart, list, Omnibus walk), price-at and the API's pages
        # (``app.selectors.history``, with ``sku``: migration 0016) read: index-only scans,
        # not a table page per row (a product's rows are spread over the table).
        indexes = [
            models.Index(
                fields=["product", "changed_at", "id"],
                include=["old_price", "new_price", "source", "changed_by", "sku"],
                name="pricehistory_product_time",
            )
        ]

    def __str__(self) -> str:
        return f"{self.sku}: {self.old_price} -> {self.new_price}"


class Location(models.Model):
    """A place stock is held (a warehouse, a shop). Deactivated, never deleted: the ledger
    names it. Its code follows the SKU rule (``app.core.domain``)."""

    code = models.CharField(max_length=SKU_MAX_LENGTH, unique=True, validators=[validate_sku])
    name = models.CharField(max_length=NAME_MAX_LENGTH, validators=[validate_name])
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class StockLevel(models.Model):
    """A product's stock at one location. ``Product.stock`` is the sum of its levels, kept
    in the transaction of every stock change by the ``levels`` effect
    (``app.tracking.levels``); transfers move quantity between two levels."""

    # No index of its own: ``one_level_per_location`` (product, location) serves every
    # lookup by product, and a second index only costs each level insert.
    product = models.ForeignKey(
        Product, on_delete=models.CASCADE, related_name="stock_levels", db_index=False
    )
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="stock_levels")
    quantity = models.IntegerField(default=0)
    # Units held by active reservations naming this location (see Product.reserved).
    reserved = models.IntegerField(default=0, db_default=0, editable=False)
    # Optional per-location low-stock threshold (null: none at this location).
    low_stock_threshold = models.PositiveIntegerField(
        null=True, blank=True, validators=[MaxValueValidator(MAX_STOCK)]
    )

    class Meta:
        ordering = ["product_id", "location_id"]
        constraints = [
            models.UniqueConstraint(fields=["product", "location"], name="one_level_per_location"),
            models.CheckConstraint(
                condition=Q(quantity__gte=0), name="stock_level_quantity_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(reserved__gte=0), name="stock_level_reserved_non_negative"
            ),
        ]
        indexes = [
            # The levels with a threshold of their own (few): the alerts effect reads them
            # for every stock change set, which was a scan of every level.
            models.Index(
                fields=["product", "location"],
                condition=Q(low_stock_threshold__isnull=False),
                name="stocklevel_own_threshold",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product_id}@{self.location_id}: {self.quantity}"


class StockMovement(ChangeSource):
    """The stock ledger: every change of a product's stock at one location, so stock ==
    sum(delta) per product and per (product, location)."""

    product = models.ForeignKey(
        Product,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="stock_movements",
        db_index=False,  # stockmovement_product_time (product, created_at, id) serves it
    )
    location = models.ForeignKey(Location, on_delete=models.PROTECT, related_name="+")
    sku = models.CharField(max_length=64, db_index=True)
    delta = models.IntegerField()
    stock_after = models.IntegerField()
    reason = models.CharField(max_length=200, blank=True, default="")
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        # A product's ledger newest first (API pages, the product page, its stock chart) is
        # a backward range scan, whatever the product's length of history (issue 13). The
        # included columns are what the product page and the API's pages
        # (``app.selectors.history``, with ``sku`` and ``idempotency_key``: migration 0016)
        # read: index-only scans.
        indexes = [
            models.Index(
                fields=["product", "created_at", "id"],
                include=[
                    "location",
                    "delta",
                    "stock_after",
                    "reason",
                    "source",
                    "changed_by",
                    "sku",
                    "idempotency_key",
                ],
                name="stockmovement_product_time",
            )
        ]

    def __str__(self) -> str:
        return f"{self.sku}: {self.delta:+d} -> {self.stock_after}"


class Reservation(ChangeSource):
    """Stock held for an order before it ships: ``available = on hand - active holds``.

    Written only by ``app.services.reservations`` (under the product's row lock, so holds
    never exceed stock). A hold ends once: committed (the stock is consumed, a ledger row
    names the reservation), released, or expired (``expires_at`` passed).
    """

    class Status(models.TextChoices):
        ACTIVE = "active"
        COMMITTED = "committed"
        RELEASED = "released"
        EXPIRED = "expired"

    # No index of its own: ``reservation_product_status`` (product, status) serves it.
    product = models.ForeignKey(
        Product,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reservations",
        db_index=False,
    )
    sku = models.CharField(max_length=64, db_index=True)
    location = models.ForeignKey(
        Location, null=True, blank=True, on_delete=models.PROTECT, related_name="reservations"
    )
    quantity = models.IntegerField()
    reference = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    expires_at = models.DateTimeField()
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(db_index=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gt=0), name="reservation_quantity_positive"
            ),
        ]
        indexes = [
            models.Index(fields=["product", "status"], name="reservation_product_status"),
            models.Index(fields=["status", "expires_at"], name="reservation_due"),
        ]

    def __str__(self) -> str:
        return f"Reservation {self.pk} {self.sku} x{self.quantity} ({self.status})"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class StockAlert(models.Model):
    """One low-stock episode of a product: opened on the way down, resolved on restock.
    With a ``location``, the episode of the product at that location (its own threshold)."""

    product = models.ForeignKey(
        Product, null=True, blank=True, on_delete=models.SET_NULL, related_name="stock_alerts"
    )
    location = models.ForeignKey(
        Location, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    sku = models.CharField(max_length=64, db_index=True)
    name = models.CharField(max_length=200)
    stock = models.IntegerField()
    threshold = models.IntegerField()
    opened_at = models.DateTimeField(db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    delivery_status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["product"],
                condition=Q(resolved_at__isnull=True, product__isnull=False, location__isnull=True),
                name="one_open_stock_alert_per_product",
            ),
            models.UniqueConstraint(
                fields=["product", "location"],
                condition=Q(
                    resolved_at__isnull=True, product__isnull=False, location__isnull=False
                ),
                name="one_open_stock_alert_per_location",
            ),
        ]
        indexes = [
            models.Index(
                fields=["delivery_status", "next_attempt_at"], name="stockalert_delivery_queue"
            )
        ]

    def __str__(self) -> str:
        return f"Low stock {self.sku}: {self.stock} < {self.threshold}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class DeletionAudit(ChangeSource):
    """What was deleted, by whom, with a JSON snapshot of the row and its history."""

    model_label = models.CharField(max_length=100)
    object_pk = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=300)
    snapshot = models.JSONField()
    deleted_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-deleted_at", "-id"]

    def __str__(self) -> str:
        return f"deleted {self.model_label} {self.object_repr}"


_NO_SPEC = object()  # ``PipelineRun._unsaved_spec``: no spec assigned since the last save


class PipelineRun(models.Model):
    """A pipeline run's record: status, counts, times, result and error.

    Its spec (a CSV feed's whole text, megabytes) is kept in a row of its own
    (``PipelineRunSpec``) and read and written through ``spec`` as if it were a field
    (``PipelineRun(spec=...)``, ``objects.create(spec=...)`` and ``save()`` write it with
    the run). Why: SQLite rewrites a row whole, overflow pages and all, on every ``UPDATE``,
    and a run's status is updated two or more times per run (claimed, finished); lists of
    runs do not read it either. ``bulk_create``, ``update()`` and ``values()`` know no
    ``spec``."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        PREVIEWED = "previewed"

    name = models.CharField(max_length=200, blank=True, default="")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    dry_run = models.BooleanField(default=False)
    mode = models.CharField(max_length=10, default="sync")
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    steps_total = models.PositiveIntegerField(default=0)
    steps_done = models.PositiveIntegerField(default=0)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Set by ``manage.py prune``, which empties spec and result of old finished runs.
    payload_pruned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("run_pipeline", "Can run inventory pipelines")]

    def __str__(self) -> str:
        return f"Pipeline run {self.pk} {self.name} ({self.status})"

    _unsaved_spec: Any = _NO_SPEC

    @property
    def spec(self) -> Any:
        """The spec as recorded (``None`` for a run stored without one, by ``bulk_create``)."""
        if self._unsaved_spec is not _NO_SPEC:
            return self._unsaved_spec
        try:
            return self.spec_record.spec
        except PipelineRunSpec.DoesNotExist:
            return None

    @spec.setter
    def spec(self, value: Any) -> None:
        self._unsaved_spec = value

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save the run and, when one was assigned, its spec, in one transaction (a run is
        never recorded without the spec it was created with)."""
        spec = self._unsaved_spec
        if spec is _NO_SPEC:
            return super().save(*args, **kwargs)
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        adding = self._state.adding
        with transaction.atomic(using=using, savepoint=False):
            super().save(*args, **kwargs)
            # A JSON null spec is stored as JSON null, not SQL NULL: the run is still recorded.
            stored = spec if spec is not None else Value(None, models.JSONField())
            record = PipelineRunSpec(run=self, spec=stored)
            record.save(using=using, force_insert=adding)
        record.spec = spec
        self._unsaved_spec = _NO_SPEC
        self.spec_record = record


class PipelineRunSpec(models.Model):
    """A run's spec, one row per run (see ``PipelineRun``); ``manage.py prune`` empties it."""

    run = models.OneToOneField(
        PipelineRun, primary_key=True, on_delete=models.CASCADE, related_name="spec_record"
    )
    # Python callers may pass Decimals: stored as their exact text. Specs can be large.
    spec = models.JSONField(encoder=FastJSONEncoder)

    def __str__(self) -> str:
        return f"Spec of pipeline run {self.run_id}"


class ApiToken(models.Model):
    """A bearer token; only its SHA-256 digest is stored, the token is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}...)"
