"""The Plivo circuit; the candidates Plivo lists for an unknown message

The circuit: sending pauses while Plivo refuses the account.

Revision ID: 9b3e5f1a2c64
Revises: 7e2a9c4b1d3f
Create Date: 2026-12-01 15:00:00

"""
from alembic import op
import sqlalchemy as sa

import webapp.models


revision = '9b3e5f1a2c64'
down_revision = '7e2a9c4b1d3f'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('plivo_circuit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=True),
    sa.Column('reason', sa.String(length=300), nullable=True),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('opened_at', webapp.models.UTCDateTime(), nullable=True),
    sa.Column('next_probe_at', webapp.models.UTCDateTime(), nullable=True),
    sa.Column('probes', sa.Integer(), server_default='0', nullable=False),
    sa.Column('closed_at', webapp.models.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plivo_circuit'))
    )
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lookup_candidates', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_column('lookup_candidates')
    op.drop_table('plivo_circuit')
