"""front doors: a caller's A1111 default model, /imagine per room and its job messages, Discord links

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql')
TABLE = dict(mysql_charset='utf8mb4', mysql_collate='utf8mb4_unicode_ci', mysql_engine='InnoDB')


def upgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('sdapi_model', sa.String(length=128), nullable=True))
    with op.batch_alter_table('rooms') as batch:
        batch.add_column(sa.Column('imagine_off', sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table('messages') as batch:
        batch.add_column(sa.Column('job_id', sa.String(length=32), nullable=True))
    op.create_table('discord_links',
    sa.Column('discord_user_id', sa.String(length=32), nullable=False),
    sa.Column('user_id', ID, nullable=False),
    sa.Column('created_at', TIME, nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('discord_user_id'),
    **TABLE
    )
    op.create_index('ix_discord_links_user', 'discord_links', ['user_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_discord_links_user', table_name='discord_links')
    op.drop_table('discord_links')
    with op.batch_alter_table('messages') as batch:
        batch.drop_column('job_id')
    with op.batch_alter_table('rooms') as batch:
        batch.drop_column('imagine_off')
    with op.batch_alter_table('users') as batch:
        batch.drop_column('sdapi_model')
