"""collaborative prompt sessions

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql')
TABLE = dict(mysql_charset='utf8mb4', mysql_collate='utf8mb4_unicode_ci', mysql_engine='InnoDB')


def upgrade() -> None:
    op.create_table('collab_sessions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('owner_id', ID, nullable=False),
    sa.Column('title', sa.String(length=120), nullable=False),
    sa.Column('created_at', TIME, nullable=False),
    sa.Column('closed_at', TIME, nullable=True),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    **TABLE
    )
    with op.batch_alter_table('collab_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_collab_sessions_owner', ['owner_id', 'created_at'], unique=False)

    op.create_table('collab_members',
    sa.Column('session_id', sa.String(length=32), nullable=False),
    sa.Column('user_id', ID, nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('joined_at', TIME, nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['collab_sessions.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('session_id', 'user_id'),
    **TABLE
    )
    with op.batch_alter_table('collab_members', schema=None) as batch_op:
        batch_op.create_index('ix_collab_members_user', ['user_id'], unique=False)

    op.create_table('collab_invites',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('session_id', sa.String(length=32), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('created_by', ID, nullable=False),
    sa.Column('created_at', TIME, nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['collab_sessions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('token_hash'),
    **TABLE
    )
    with op.batch_alter_table('collab_invites', schema=None) as batch_op:
        batch_op.create_index('ix_collab_invites_session', ['session_id'], unique=False)

    op.create_table('collab_updates',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('session_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('data', sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), 'mysql'), nullable=False),
    sa.Column('created_at', TIME, nullable=False),
    sa.ForeignKeyConstraint(['session_id'], ['collab_sessions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    **TABLE
    )
    with op.batch_alter_table('collab_updates', schema=None) as batch_op:
        batch_op.create_index('ix_collab_updates_session', ['session_id', 'id'], unique=False)

    op.create_table('collab_renders',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('session_id', sa.String(length=32), nullable=False),
    sa.Column('job_id', sa.String(length=32), nullable=False),
    sa.Column('created_by', ID, nullable=False),
    sa.Column('snapshot', sa.Text(), nullable=False),
    sa.Column('created_at', TIME, nullable=False),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['collab_sessions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    **TABLE
    )
    with op.batch_alter_table('collab_renders', schema=None) as batch_op:
        batch_op.create_index('ix_collab_renders_session', ['session_id', 'created_at'], unique=False)
        batch_op.create_index('ix_collab_renders_job', ['job_id'], unique=False)


def downgrade() -> None:
    for table, indexes in (('collab_renders', ['ix_collab_renders_job', 'ix_collab_renders_session']),
                           ('collab_updates', ['ix_collab_updates_session']),
                           ('collab_invites', ['ix_collab_invites_session']),
                           ('collab_members', ['ix_collab_members_user']),
                           ('collab_sessions', ['ix_collab_sessions_owner'])):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for index in indexes:
                batch_op.drop_index(index)
        op.drop_table(table)
