"""status_events.signature renamed signature_scheme: it holds a scheme name, not a signature

Revision ID: 5c0e2b7a9f14
Revises: 1a31ede31dfb
Create Date: 2026-12-01 07:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5c0e2b7a9f14'
down_revision = '1a31ede31dfb'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('status_events', schema=None) as batch_op:
        batch_op.alter_column('signature', new_column_name='signature_scheme',
                              existing_type=sa.String(length=16), existing_nullable=False)


def downgrade():
    with op.batch_alter_table('status_events', schema=None) as batch_op:
        batch_op.alter_column('signature_scheme', new_column_name='signature',
                              existing_type=sa.String(length=16), existing_nullable=False)
