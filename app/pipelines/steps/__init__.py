"""One module per pipeline step type; each registers itself with ``@register``."""
