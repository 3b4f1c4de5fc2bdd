"""How2QA: instructional-video QA, 4 choices in the VALUE release; accuracy."""

from vladapter.tasks.videoqa import VideoQATask

TASK = VideoQATask("how2qa")
