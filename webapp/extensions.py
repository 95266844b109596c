"""Extensions, created once here and bound to an app in `create_app`."""

from flask import current_app, has_request_context, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session as FlaskSQLAlchemySession
from flask_wtf import CSRFProtect
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    # Named constraints, so migrations can alter them on SQLite and PostgreSQL alike.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _reading_request() -> bool:
    return has_request_context() and request.method in READ_ONLY_METHODS


class Session(FlaskSQLAlchemySession):
    """`db.session`. In a GET or HEAD request on PostgreSQL it reads on an autocommit
    connection: no BEGIN before the first query and no ROLLBACK after the last, two of
    the five round trips of a history page. Under READ COMMITTED every statement reads
    its own snapshot either way, so no page shows anything different. Such a request
    must not write (see `_refuse_writes_when_reading`)."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        engine = super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)
        if (bind is None and isinstance(engine, Engine) and engine.dialect.name == "postgresql"
                and _reading_request()):
            made = current_app.extensions.setdefault("autocommit_engines", {})
            if engine not in made:  # the same pool, its connections lent in autocommit
                made[engine] = engine.execution_options(isolation_level="AUTOCOMMIT")
            return made[engine]
        return engine


@event.listens_for(Session, "before_flush")
def _refuse_writes_when_reading(session, _flush_context, _instances):
    if _reading_request() and (session.new or session.dirty or session.deleted):
        raise RuntimeError(f"a {request.method} request tried to write to the database; "
                           "changes belong in POST handlers")


db = SQLAlchemy(model_class=Base, session_options={"class_": Session})
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
# The client address comes from request.remote_addr, which ProxyFix rewrites
# only when TRUSTED_PROXIES says how many proxies to believe.
limiter = Limiter(key_func=get_remote_address, headers_enabled=True)
