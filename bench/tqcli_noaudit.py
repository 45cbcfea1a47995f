"""`tqcli` with the audit append skipped: how bench/parallel.py measures what the audit chain costs a drain.

A benchmark's instrument, never for real use: the tasks it runs leave no
audit entries, so the chain no longer covers them. tqcli itself is not
changed; this process replaces the one call that appends a transaction's
entries (tqcli.core.context.append_entries) before tqcli's CLI starts.

    python bench/tqcli_noaudit.py worker --once
"""

import tqcli.core.context as context

context.append_entries = lambda *args, **kwargs: None

from tqcli.cli import main  # noqa: E402

main()
