"""``manage.py check_product_rules``: report products whose SKU or name breaks today's rules.

Rows written before the rules (``app.core.domain``) existed may hold a SKU with a line
break, a tab, a space or a "/", or a name with control characters. This command lists each
one with the reason and exits with status 1 when there is any; it changes nothing (fix
such rows in the admin, which validates the new values).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from ...core.domain import name_problem, sku_problem
from ...core.pagination import keyset_chunks
from ...models import Product


class Command(BaseCommand):
    help = "Report products whose SKU or name breaks the rules (exit status 1 if any)."

    def handle(self, *args, **options) -> None:
        broken = 0
        rows = (
            row for chunk in keyset_chunks(Product._base_manager, "sku", "name") for row in chunk
        )
        for pk, sku, name in rows:
            problems = [
                f"{field}: {problem}"
                for field, problem in (("sku", sku_problem(sku)), ("name", name_problem(name)))
                if problem
            ]
            if problems:
                broken += 1
                self.stdout.write(f"product {pk} sku={sku!r} name={name!r}: {'; '.join(problems)}")
        if broken:
            raise CommandError(f"{broken} product(s) break the SKU or name rules.", returncode=1)
        self.stdout.write("Every product follows the SKU and name rules.")
