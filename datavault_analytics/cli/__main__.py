"""`python -m datavault_analytics.cli`: the same as the `datavault-analytics` command."""

import sys

from datavault_analytics.cli import main

sys.exit(main())
