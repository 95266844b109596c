"""The overview's rollups: counts per day, delivery-time histograms, callbacks per hour

Revision ID: e7b2d4f6a813
Revises: c4d7e1f0a8b2
Create Date: 2026-12-02 04:00:00

"""
from alembic import op
import sqlalchemy as sa

import webapp.models


revision = 'e7b2d4f6a813'
down_revision = 'c4d7e1f0a8b2'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('daily_stats',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error_code', sa.String(length=16), nullable=False),
    sa.Column('messages', sa.Integer(), nullable=False),
    sa.Column('priced', sa.Integer(), nullable=False),
    sa.Column('cost_micros', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('day', 'created_by_id', 'status', 'error_code',
                            name=op.f('pk_daily_stats'))
    )
    op.create_table('daily_latency',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('buckets', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_daily_latency'))
    )
    op.create_table('callback_hours',
    sa.Column('hour', webapp.models.UTCDateTime(), nullable=False),
    sa.Column('scheme', sa.String(length=16), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('hour', 'scheme', name=op.f('pk_callback_hours'))
    )
    op.create_table('rollup_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('zone', sa.String(length=64), nullable=False),
    sa.Column('refreshed_at', webapp.models.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rollup_state'))
    )


def downgrade():
    op.drop_table('rollup_state')
    op.drop_table('callback_hours')
    op.drop_table('daily_latency')
    op.drop_table('daily_stats')
