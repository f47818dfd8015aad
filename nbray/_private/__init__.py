"""Private module paths that Ray programs import (``ray._private.*``)."""
