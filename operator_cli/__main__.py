"""`python -m operator_cli ...`"""

from operator_cli.commands import main

raise SystemExit(main())
