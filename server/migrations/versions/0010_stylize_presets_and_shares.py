"""stylize: style presets, share links, the original photo a post may show

Revision ID: 0010
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = '0010'
down_revision = '0008'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), 'mysql')
TABLE = dict(mysql_charset='utf8mb4', mysql_collate='utf8mb4_unicode_ci', mysql_engine='InnoDB')


def upgrade() -> None:
    op.create_table('presets',
    sa.Column('id', ID, autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('title_en', sa.String(length=80), nullable=False),
    sa.Column('title_zh', sa.String(length=80), nullable=False),
    sa.Column('description_en', sa.Text(), nullable=False),
    sa.Column('description_zh', sa.Text(), nullable=False),
    sa.Column('checkpoint', sa.String(length=128), nullable=False),
    sa.Column('loras', sa.Text(), nullable=False),
    sa.Column('controls', sa.Text(), nullable=False),
    sa.Column('prompt_template', sa.Text(), nullable=False),
    sa.Column('negative_prompt', sa.Text(), nullable=False),
    sa.Column('strength', sa.Float(), nullable=True),
    sa.Column('steps', sa.Integer(), nullable=False),
    sa.Column('guidance', sa.Float(), nullable=False),
    sa.Column('sampler', sa.String(length=32), nullable=False),
    sa.Column('side_px', sa.Integer(), nullable=True),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('cover_sha256', sa.String(length=64), nullable=True),
    sa.Column('created_by', ID, nullable=True),
    sa.Column('created_at', TIME, nullable=False),
    sa.Column('updated_at', TIME, nullable=False),
    sa.Column('retired_at', TIME, nullable=True),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name'),
    **TABLE
    )
    op.create_index('ix_presets_retired', 'presets', ['retired_at', 'position', 'id'], unique=False)
    op.create_table('shares',
    sa.Column('id', sa.String(length=16), nullable=False),
    sa.Column('owner_id', ID, nullable=False),
    sa.Column('job_id', sa.String(length=32), nullable=False),
    sa.Column('image_id', sa.String(length=32), nullable=False),
    sa.Column('title', sa.String(length=120), nullable=False),
    sa.Column('original_sha256', sa.String(length=64), nullable=True),
    sa.Column('created_at', TIME, nullable=False),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    **TABLE
    )
    op.create_index('uq_shares_image', 'shares', ['image_id'], unique=True)
    op.create_index('ix_shares_owner', 'shares', ['owner_id', 'created_at'], unique=False)
    with op.batch_alter_table('posts') as batch:
        batch.add_column(sa.Column('original_sha256', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('posts') as batch:
        batch.drop_column('original_sha256')
    op.drop_index('ix_shares_owner', table_name='shares')
    op.drop_index('uq_shares_image', table_name='shares')
    op.drop_table('shares')
    op.drop_index('ix_presets_retired', table_name='presets')
    op.drop_table('presets')
