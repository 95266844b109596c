"""Messages: when the reconciler next asks Plivo, how often it has, when it last did

Messages Plivo accepted that have no final status yet are scheduled for a first lookup
now, so that an upgrade after lost callbacks finds them.

Revision ID: 7e2a9c4b1d3f
Revises: 4c8f1d2e7a90
Create Date: 2026-12-01 12:20:00

"""
from alembic import op
import sqlalchemy as sa

import webapp.models


revision = '7e2a9c4b1d3f'
down_revision = '4c8f1d2e7a90'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_lookup_at', webapp.models.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('lookups', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('looked_up_at', webapp.models.UTCDateTime(), nullable=True))
        batch_op.create_index(batch_op.f('ix_messages_next_lookup_at'), ['next_lookup_at'], unique=False)
    messages = sa.table('messages', sa.column('next_lookup_at', webapp.models.UTCDateTime()),
                        sa.column('status', sa.String()), sa.column('plivo_uuid', sa.String()),
                        sa.column('updated_at', webapp.models.UTCDateTime()))
    op.execute(messages.update()
               .where(messages.c.status.in_(('queued', 'sent')),
                      messages.c.plivo_uuid.is_not(None))
               .values(next_lookup_at=messages.c.updated_at))


def downgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_next_lookup_at'))
        batch_op.drop_column('looked_up_at')
        batch_op.drop_column('lookups')
        batch_op.drop_column('next_lookup_at')
