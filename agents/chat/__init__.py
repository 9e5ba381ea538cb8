"""The dispatch chat: who may do what (:mod:`.users`), the tools the agent reads and
acts through (:mod:`.tools`), and the offline slash-command mode (:mod:`.commands`).

The tools are the only way the chat — an LLM or the command parser — reads or
changes anything; permissions are enforced inside them, never left to a prompt.
"""

from city.users import PermissionDenied, Role, User

__all__ = ["PermissionDenied", "Role", "User"]
