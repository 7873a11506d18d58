"""``python -m gdstab.cli``: the ``gdstab`` command (as ``python -m gdstab``)."""

from .._launch import main

raise SystemExit(main())
