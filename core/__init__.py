# Before any module of the project's packages is imported: compiled ones must be up to date.
from core.compiled import compiled_sources_check

compiled_sources_check()
