"""Texts of a matplotlib figure as drawn: each inside the figure, none cut at an axes' edge, no two overlapping."""

from matplotlib.text import Text


def drawn_texts(fig, monkeypatch) -> "list[Text]":
    """Every non-empty text the renderer draws (ticks out of view are not drawn, so not counted)."""
    drawn, draw = [], Text.draw

    def recording(self, renderer):
        if self.get_visible() and self.get_text():
            drawn.append(self)
        return draw(self, renderer)

    monkeypatch.setattr(Text, "draw", recording)
    fig.canvas.draw()
    monkeypatch.undo()
    return drawn


def assert_texts_apart(fig, texts: "list[Text]") -> None:
    renderer = fig.canvas.get_renderer()
    boxes = [(text.get_text(), text.get_window_extent(renderer)) for text in texts]
    figure = fig.bbox
    for text in texts:
        assert not (text.get_clip_on() and (text.get_clip_box() or text.get_clip_path())), text.get_text()
    for text, box in boxes:
        assert figure.x0 <= box.x0 and box.x1 <= figure.x1 and figure.y0 <= box.y0 and box.y1 <= figure.y1, text
    for i, (text, box) in enumerate(boxes):
        for other, other_box in boxes[i + 1:]:
            assert not box.overlaps(other_box), (text, other)
