from rest_framework.permissions import IsAdminUser


class IsStaff(IsAdminUser):
    """Staff only: anonymous callers get 401, authenticated non-staff 403."""
