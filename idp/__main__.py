"""``python -m idp ...``: the dev IdP's command line (see ``idp.cli``)."""

from idp.cli import main

raise SystemExit(main())
