"""The uploader role: input topic → Apps API bulk create, bad records → dead-letter topic."""

from connector.uploader.role import Uploader

__all__ = ["Uploader"]
