"""TVC: TV-show clip captioning with subtitles; CIDEr."""

from vladapter.tasks.videocaption import VideoCaptionTask

TASK = VideoCaptionTask("tvc")
