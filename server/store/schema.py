"""Every table of the one schema: importing this registers them all on ``Base.metadata``.

Migrations and the schema test need the whole schema; services import only their own tables.
"""

from server.store import collab_tables, community_tables, hub_tables, models, stylize_tables  # noqa: F401
from server.store.models import Base

metadata = Base.metadata
