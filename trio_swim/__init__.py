"""SWIM cluster membership, failure detection and small broadcasts for trio."""

from ._hub import EventStream as EventStream
from .addresses import AddressError as AddressError
from .config import Config as Config
from .config import ConfigError as ConfigError
from .events import BroadcastReceived as BroadcastReceived
from .events import Event as Event
from .events import EventsMissed as EventsMissed
from .events import MemberRemoved as MemberRemoved
from .events import MessageReceived as MessageReceived
from .events import MetadataChanged as MetadataChanged
from .events import StatusChanged as StatusChanged
from .member import BroadcastTooLarge as BroadcastTooLarge
from .member import DeliveryFailed as DeliveryFailed
from .member import Member as Member
from .member import MemberStatistics as MemberStatistics
from .member import MessageTooLarge as MessageTooLarge
from .member import MetadataTooLarge as MetadataTooLarge
from .member import open_member as open_member
from .membership import Node as Node
from .membership import Status as Status
from .security import Keyring as Keyring

__version__ = "0.1.0"

__all__ = [
    "AddressError",
    "BroadcastReceived",
    "BroadcastTooLarge",
    "Config",
    "ConfigError",
    "DeliveryFailed",
    "Event",
    "EventStream",
    "EventsMissed",
    "Keyring",
    "Member",
    "MemberRemoved",
    "MemberStatistics",
    "MessageReceived",
    "MessageTooLarge",
    "MetadataChanged",
    "MetadataTooLarge",
    "Node",
    "Status",
    "StatusChanged",
    "open_member",
]
