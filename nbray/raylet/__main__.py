"""``python -m nbray.raylet``: the raylet process.

The worker factory is started first, from the command line alone, so that
it imports the workers' modules while this process imports the raylet's
(``zygote_process.start_early``).
"""

import sys

from nbray.raylet import zygote_process

zygote_process.start_early(sys.argv[1:])

from nbray.raylet.main import main  # noqa: E402

main()
