"""Live: public jobs by status and finish time (the running tiles and the newest finished ones)

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_jobs_public_status_finished', 'jobs', ['public', 'status', 'finished_at'])


def downgrade() -> None:
    op.drop_index('ix_jobs_public_status_finished', table_name='jobs')
