"""hardening: invitations expire, count uses and can be revoked; removals; grouped, once-only notices

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql')
TABLE = dict(mysql_charset='utf8mb4', mysql_collate='utf8mb4_unicode_ci', mysql_engine='InnoDB')


def _recreate() -> str:
    # SQLite cannot ADD a NOT NULL column without a default; copying the (emptied) table can. MySQL adds it.
    return 'always' if op.get_bind().dialect.name == 'sqlite' else 'auto'


def upgrade() -> None:
    # Links made before invitations could expire or be revoked may be in the hands of removed members:
    # they are dropped, and owners make new ones.
    op.execute(sa.text('DELETE FROM collab_invites'))
    with op.batch_alter_table('collab_invites', recreate=_recreate()) as batch:
        batch.add_column(sa.Column('expires_at', TIME, nullable=False))
        batch.add_column(sa.Column('max_uses', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('uses', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('revoked_at', TIME, nullable=True))
    op.create_table('collab_removals',
    sa.Column('session_id', sa.String(length=32), nullable=False),
    sa.Column('user_id', ID, nullable=False),
    sa.Column('removed_at', TIME, nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['collab_sessions.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('session_id', 'user_id'),
    **TABLE
    )
    with op.batch_alter_table('notifications') as batch:
        batch.add_column(sa.Column('actor_count', sa.Integer(), nullable=False, server_default='1'))
        batch.create_index('ix_notifications_message', ['message_id'], unique=False)
    op.create_table('notices_once',
    sa.Column('user_id', ID, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('subject_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('actor_id', ID, nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'kind', 'subject_id', 'actor_id'),
    **TABLE
    )


def downgrade() -> None:
    op.drop_table('notices_once')
    with op.batch_alter_table('notifications') as batch:
        batch.drop_index('ix_notifications_message')
        batch.drop_column('actor_count')
    op.drop_table('collab_removals')
    with op.batch_alter_table('collab_invites', recreate=_recreate()) as batch:
        batch.drop_column('revoked_at')
        batch.drop_column('uses')
        batch.drop_column('max_uses')
        batch.drop_column('expires_at')
