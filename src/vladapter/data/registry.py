"""Where the real datasets' files come from: URL, size and sha256 (None = not known to us).

Sizes and sha256 are pinned where public values exist (COCO's and Karpathy's zips: the
values tensorflow/datasets verifies; NLVR2's statements at a fixed commit of lil-lab/nlvr).
Every other file is listed in docs/data.md ("Unpinned downloads") with the reason;
`vladapter download` prints the sha256 of every file it fetches without one, so it can be
pinned here (tests/test_download.py keeps the two lists in step). Archives list the
members to extract (member -> path under data/raw/<dataset>/; "*" -> every member under
that folder). Videos of TVQA/TVC (TV shows) and How2QA/YouCook2 (YouTube) and the NLVR2
images cannot be fetched by URL: `NOTES` says how to get them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RemoteFile:
    name: str  # file name under data/raw/<dataset>/ (archives: kept there too, so reruns skip them)
    url: str
    size: int | None = None
    sha256: str | None = None
    extract: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "RemoteFile":
        return cls(d["name"], d["url"], d.get("size"), d.get("sha256"), dict(d.get("extract") or {}))


GH = "https://raw.githubusercontent.com"
# lil-lab/nlvr: a fixed commit, so the pinned checksums stay true when master moves
NLVR_COMMIT = "18924841aa96d519cfb8584f0945350f07a6d860"

REGISTRY: dict[str, list[RemoteFile]] = {
    "coco": [
        RemoteFile("caption_datasets.zip", "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip",
                   size=36_745_453, sha256="4cfd70132527b80933105e5829dc9034eaab9573482e2e680abbab6130244817",
                   extract={"dataset_coco.json": "dataset_coco.json"}),
        RemoteFile("train2014.zip", "http://images.cocodataset.org/zips/train2014.zip", size=13_510_573_713,
                   sha256="ede4087e640bddba550e090eae701092534b554b42b05ac33f0300b984b31775", extract={"*": "images"}),
        RemoteFile("val2014.zip", "http://images.cocodataset.org/zips/val2014.zip", size=6_645_013_297,
                   sha256="fe9be816052049c34717e077d9e34aa60814a55679f804cd043e3cbee3b9fde0", extract={"*": "images"}),
    ],
    "vqav2": [
        RemoteFile("v2_Questions_Train_mscoco.zip",
                   "https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa/v2_Questions_Train_mscoco.zip",
                   extract={"v2_OpenEnded_mscoco_train2014_questions.json": "v2_OpenEnded_mscoco_train2014_questions.json"}),
        RemoteFile("v2_Questions_Val_mscoco.zip",
                   "https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa/v2_Questions_Val_mscoco.zip",
                   extract={"v2_OpenEnded_mscoco_val2014_questions.json": "v2_OpenEnded_mscoco_val2014_questions.json"}),
        RemoteFile("v2_Annotations_Train_mscoco.zip",
                   "https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa/v2_Annotations_Train_mscoco.zip",
                   extract={"v2_mscoco_train2014_annotations.json": "v2_mscoco_train2014_annotations.json"}),
        RemoteFile("v2_Annotations_Val_mscoco.zip",
                   "https://s3.amazonaws.com/cvmlp/vqa/mscoco/vqa/v2_Annotations_Val_mscoco.zip",
                   extract={"v2_mscoco_val2014_annotations.json": "v2_mscoco_val2014_annotations.json"}),
    ],
    "gqa": [
        RemoteFile("questions1.2.zip", "https://downloads.cs.stanford.edu/nlp/data/gqa/questions1.2.zip",
                   extract={f"{s}_balanced_questions.json": f"{s}_balanced_questions.json"
                            for s in ("train", "val", "testdev")}),
        RemoteFile("images.zip", "https://downloads.cs.stanford.edu/nlp/data/gqa/images.zip", extract={"*": ""}),
    ],
    "nlvr2": [
        RemoteFile("train.json", f"{GH}/lil-lab/nlvr/{NLVR_COMMIT}/nlvr2/data/train.json"),
        RemoteFile("dev.json", f"{GH}/lil-lab/nlvr/{NLVR_COMMIT}/nlvr2/data/dev.json", size=3_762_423,
                   sha256="7c44bc7831c0e060ae7d31807c91cc0c9791322363d8d86828fb44a77f09ae88"),
        RemoteFile("test1.json", f"{GH}/lil-lab/nlvr/{NLVR_COMMIT}/nlvr2/data/test1.json", size=3_780_579,
                   sha256="f49a6c512d6868f8faf3b3bbe1a816bf5e8643f13c1bf26e527a21b84e27e2ec"),
    ],
    "tvqa": [
        RemoteFile("tvqa_qa_release.tar.gz", "https://tvqa.cs.unc.edu/files/tvqa_qa_release.tar.gz",
                   extract={f"tvqa_qa_release/tvqa_{s}.jsonl": f"tvqa_{s}.jsonl"
                            for s in ("train", "val", "test_public")}),
    ],
    "how2qa": [
        RemoteFile(f"how2QA_{s}_release.csv", f"{GH}/ych133/How2R-and-How2QA/master/how2QA/how2QA_{s}_release.csv",
                   size=size)
        for s, size in (("train", None), ("val", 329_216), ("test_public", 351_583))
    ],
    "tvc": [
        RemoteFile(f"tvc_{s}_release.jsonl", f"{GH}/jayleicn/TVCaption/master/data/tvc_{s}_release.jsonl", size=size)
        for s, size in (("train", None), ("val", None), ("test_public", 552_251))
    ],
    "yc2c": [
        RemoteFile("youcookii_annotations_trainval.tar.gz",
                   "http://youcook2.eecs.umich.edu/static/YouCookII/youcookii_annotations_trainval.tar.gz",
                   extract={"youcookii_annotations_trainval.json": "youcookii_annotations_trainval.json"}),
    ],
}

NOTES: dict[str, str] = {
    "coco": "Karpathy splits + COCO 2014 images (~19 GB).",
    "vqav2": "Questions and annotations; the images are COCO's (`vladapter download coco`).",
    "gqa": "Balanced questions (v1.2) and the GQA images (~20 GB).",
    "nlvr2": "Statements only: the images are distributed on request (https://lil.nlp.cornell.edu/nlvr/); "
             "unpack them to <raw_dir>/nlvr2/images/{train,dev,test1}/ (train's nested <directory>/ sub-folders "
             "as released), or point config data.paths.nlvr2 at your folder.",
    "tvqa": "QA files (after accepting the TVQA download agreement). Videos/frames come with the agreement; "
            "subtitles: the VALUE release's subtitle jsonl as data/raw/tvqa/tvqa_subtitles.jsonl.",
    "how2qa": "HERO's CSV files (not VALUE's benchmark: the paper's How2QA is VALUE's jsonl, fetched with VALUE's "
              "DataRelease scripts and read where they put it: docs/data.md, \"VALUE's release\"). Videos are "
              "YouTube clips (HERO/VALUE release); subtitles: how2qa_subtitles.jsonl.",
    "tvc": "Caption files (test_public has no descriptions). Videos as for TVQA; subtitles: tvc_subtitles.jsonl.",
    "yc2c": "YouCook2's official annotations (train/val; read when the VALUE yc2c_*_release.jsonl files are "
            "absent). Videos are YouTube clips.",
}
