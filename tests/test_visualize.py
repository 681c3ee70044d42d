"""Ranked-list figure: layout, ordering and the colour of each frame."""
from __future__ import annotations

import numpy as np

from reid.visualize import ranked_list_grid
from reid.visualize.ranked_list import GREEN, RED


def test_ranked_list_frames_true_matches_green_and_skips_same_camera():
    h, w = 8, 4
    q = np.zeros((2, h, w, 3), np.uint8)
    g = np.full((5, h, w, 3), 200, np.uint8)
    q_pids, q_cams = np.array([1, 2]), np.array([0, 0])
    g_pids, g_cams = np.array([1, 1, 2, 3, 2]), np.array([0, 1, 1, 1, 0])
    dist = np.array([[0.0, 0.1, 0.2, 0.3, 0.4],   # g0 is pid 1 cam 0: skipped for query 0
                     [0.5, 0.4, 0.3, 0.2, 0.1]])  # g4 is pid 2 cam 0: skipped for query 1
    img = np.asarray(ranked_list_grid(q, g, dist, q_pids, g_pids, q_cams, g_cams, topk=3))
    cell_w, cell_h, gap = w + 6, h + 6, 8
    assert img.shape == (2 * (cell_h + 4), 4 * cell_w + gap + 6, 3)

    def frame(row, k):
        return tuple(img[row * (cell_h + 4), cell_w + gap + k * (cell_w + 2)])

    assert [frame(0, k) for k in range(3)] == [GREEN, RED, RED]   # g1 (pid 1), g2, g3
    assert [frame(1, k) for k in range(3)] == [RED, GREEN, RED]   # g3, g2 (pid 2), g1
