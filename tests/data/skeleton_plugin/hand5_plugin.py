"""A user's plugin: registers the 5-keypoint ``hand5`` skeleton from its YAML, nothing else.

``POSEARENA_PLUGINS=tests.data.skeleton_plugin.hand5_plugin python -m bench evaluate method=mine dataset=keypoints
dataset.skeleton=hand5 data_root=DIR predictions=FILE`` then scores a COCO keypoint results file of that skeleton.
"""
from __future__ import annotations

from pathlib import Path

from bench.data.skeleton_keypoints import register_skeleton

register_skeleton("hand5", Path(__file__).with_name("hand5.yaml"))
