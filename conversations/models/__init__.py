from conversations.models.attachments import Attachment
from conversations.models.chat import Conversation, Message
from conversations.models.gateway import ApiKey, AuditLog, Profile, PromptTemplate, UsageRecord
from conversations.models.preferences import Preferences
from conversations.models.providers import Model, Provider
from conversations.models.sharing import Share
from conversations.models.sso import Identity

__all__ = [
    "ApiKey",
    "Attachment",
    "AuditLog",
    "Conversation",
    "Identity",
    "Message",
    "Model",
    "Preferences",
    "Profile",
    "PromptTemplate",
    "Provider",
    "Share",
    "UsageRecord",
]
