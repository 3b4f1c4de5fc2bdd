"""TVQA: video QA with subtitles, 5 choices; accuracy."""

from vladapter.tasks.videoqa import VideoQATask

TASK = VideoQATask("tvqa")
