from django.core.management.base import BaseCommand

from app.services.alerts import enqueue_due_alerts


class Command(BaseCommand):
    help = "Enqueue delivery of every pending low-stock alert that is due (run from cron)."

    def handle(self, *args, **options):
        count = enqueue_due_alerts()
        self.stdout.write(f"{count} pending alert(s) enqueued.")
