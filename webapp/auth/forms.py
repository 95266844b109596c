from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SelectChoice, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

from webapp.auth.passwords import MAX_LENGTH, WeakPassword, check_policy

ROLE_CHOICES = [SelectChoice("staff", "Staff"), SelectChoice("admin", "Admin")]


class PasswordPolicy:
    """Runs the shared password policy as a WTForms validator."""

    def __call__(self, form, field):
        email = getattr(getattr(form, "email", None), "data", None)
        try:
            check_policy(field.data or "", email)
        except WeakPassword as exc:
            raise ValidationError(str(exc)) from exc


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_LENGTH)])
    submit = SubmitField("Sign in")


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField("Current password", validators=[DataRequired()])
    new_password = PasswordField("New password", validators=[DataRequired(), PasswordPolicy()])
    confirm = PasswordField("Repeat the new password", validators=[
        DataRequired(), EqualTo("new_password", message="The two passwords differ.")])
    submit = SubmitField("Change password")


class CreateUserForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=254)])
    role = SelectField("Role", choices=ROLE_CHOICES)
    password = PasswordField("Initial password", validators=[DataRequired(), PasswordPolicy()])
    submit = SubmitField("Create account")


class ResetPasswordForm(FlaskForm):
    password = PasswordField("New password", validators=[DataRequired(), PasswordPolicy()])
    submit = SubmitField("Reset password")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
    submit = SubmitField("Change role")


class ActionForm(FlaskForm):
    """A button-only POST form (logout, deactivate): CSRF token and nothing else."""

    submit = SubmitField("Confirm")


def time_zone_choices() -> list[tuple[str, str]]:
    from zoneinfo import available_timezones

    names = sorted(n for n in available_timezones() if "/" in n and not n.startswith("Etc/"))
    return [("", "The dashboard's time zone"), ("UTC", "UTC"), *((n, n) for n in names)]


class TimeZoneForm(FlaskForm):
    time_zone = SelectField("Show times in", validate_choice=True)
    submit = SubmitField("Save")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.time_zone.choices = time_zone_choices()


class CodeForm(FlaskForm):
    """The 6-digit code from an authenticator app, or a recovery code."""

    code = StringField("Code", validators=[DataRequired(message="Type the code."),
                                           Length(max=32, message="That is not a code.")])
    submit = SubmitField("Continue")


class DisableTwoFactorForm(FlaskForm):
    password = PasswordField("Your password", validators=[DataRequired(),
                                                          Length(max=MAX_LENGTH)])
    submit = SubmitField("Turn two-factor off")


class RequireTwoFactorForm(FlaskForm):
    required = SelectField("Two-factor sign-in", choices=[
        SelectChoice("off", "Each person chooses"),
        SelectChoice("on", "Required for everyone")])
    submit = SubmitField("Save")
