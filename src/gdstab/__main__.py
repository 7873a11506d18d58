"""``python -m gdstab``: the ``gdstab`` command."""

from gdstab._launch import main

raise SystemExit(main())
