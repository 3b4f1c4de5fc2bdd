"""YC2C: YouCook2 clip captioning (VALUE version); CIDEr."""

from vladapter.tasks.videocaption import VideoCaptionTask

TASK = VideoCaptionTask("yc2c")
