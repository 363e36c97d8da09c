"""Exit statuses with a meaning for the supervisor."""

from __future__ import annotations

# A child that cannot be built from its config (a component's metadata, a
# listener it cannot bind): restarting cannot help, so the supervisor marks
# it FATAL at once instead of restarting it into a crash loop.
EXIT_CONFIG = 78
