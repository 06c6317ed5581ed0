from django.core.management.base import BaseCommand

from ...services.alerts import enqueue_due_alerts
from ...webhooks.services import enqueue_due_deliveries


class Command(BaseCommand):
    help = (
        "Enqueue delivery of every pending low-stock alert and webhook delivery that is due "
        "(run from cron)."
    )

    def handle(self, *args, **options):
        count = enqueue_due_alerts()
        self.stdout.write(f"{count} pending alert(s) enqueued.")
        streams = enqueue_due_deliveries()
        self.stdout.write(f"{streams} webhook stream(s) with pending deliveries enqueued.")
