"""`tqcli` with the audit append skipped: how bench/parallel.py measures what the audit chain costs a drain.

A benchmark's instrument, never for real use: the tasks it runs leave no
audit entries, so the chain no longer covers them. tqcli itself is not
changed; this process replaces the one call that appends a transaction's
entries (tqcli.core.context.append_entries) before tqcli's CLI starts.

    python bench/tqcli_noaudit.py worker --once
"""

import sys

import tqcli.core.context as context

if not hasattr(context, "append_entries"):  # the call moved: skipping nothing would measure the audit as is
    sys.exit("bench/tqcli_noaudit.py: tqcli.core.context.append_entries is gone; point this file at where entries are appended now")
context.append_entries = lambda *args, **kwargs: None

from tqcli.cli import main  # noqa: E402

main()
