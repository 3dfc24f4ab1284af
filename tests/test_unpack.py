"""safe_extract: real archives, good and malicious."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from hermitbuild.errors import UnpackError
from hermitbuild.unpack import safe_extract

from helpers_fetch import paths_under


def reg(name: str, data: bytes = b"x", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 1500000000
    return info, data


def special(name: str, type_: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.linkname = linkname
    info.mode = 0o644
    info.mtime = 1500000000
    return info, b""


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


GOOD = [
    special("pkg-1.0/", tarfile.DIRTYPE),
    reg("pkg-1.0/configure", b"#!/bin/sh\necho hi\n", 0o755),
    reg("pkg-1.0/src/main.c", b"int main(void){return 0;}\n"),
    special("pkg-1.0/src/link.c", tarfile.SYMTYPE, "main.c"),
    special("pkg-1.0/include/up.h", tarfile.SYMTYPE, "../src/main.c"),
    special("pkg-1.0/hard.c", tarfile.LNKTYPE, "pkg-1.0/src/main.c"),
    reg("pkg-1.0/setuid", b"s", 0o4777),
]


@pytest.mark.parametrize("mode,suffix", [("w", "tar"), ("w:gz", "tar.gz"), ("w:bz2", "tar.bz2"),
                                         ("w:xz", "tar.xz")])
def test_good_tarball_all_compressions(tmp_path: Path, mode: str, suffix: str) -> None:
    archive = make_tar(tmp_path / f"pkg.{suffix}", GOOD, mode)
    dest = tmp_path / "out"
    safe_extract(archive, dest, 1)
    assert paths_under(dest) == ["configure", "hard.c", "include", "include/up.h", "setuid", "src",
                                 "src/link.c", "src/main.c"]
    assert os.access(dest / "configure", os.X_OK)
    assert (dest / "src/link.c").is_symlink() and os.readlink(dest / "src/link.c") == "main.c"
    assert (dest / "include/up.h").read_bytes() == (dest / "src/main.c").read_bytes()
    assert (dest / "hard.c").stat().st_ino == (dest / "src/main.c").stat().st_ino
    assert (dest / "src/main.c").stat().st_mtime == 1500000000
    mode_bits = stat.S_IMODE((dest / "setuid").stat().st_mode)
    assert not mode_bits & (stat.S_ISUID | stat.S_IWOTH | stat.S_IWGRP)
    assert (dest / "src/main.c").stat().st_uid == os.getuid()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", f"pkg.{suffix}"]  # no temp dir left


def test_strip_components_like_tar(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "a.tar.gz", [reg("./top/mid/f.txt", b"1"), reg("top/g.txt", b"2"),
                                               reg("toplevel.txt", b"3")])
    safe_extract(archive, tmp_path / "s0", 0)
    assert paths_under(tmp_path / "s0") == ["top", "top/g.txt", "top/mid", "top/mid/f.txt", "toplevel.txt"]
    safe_extract(archive, tmp_path / "s1", 1)
    assert paths_under(tmp_path / "s1") == ["g.txt", "mid", "mid/f.txt"]
    safe_extract(archive, tmp_path / "s2", 2)
    assert paths_under(tmp_path / "s2") == ["f.txt"]
    with pytest.raises(UnpackError, match="strip_components"):
        safe_extract(archive, tmp_path / "s3", 3)
    assert not (tmp_path / "s3").exists()


def test_merges_into_existing_dest(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    (dest / "src").mkdir(parents=True)
    (dest / "src/keep.c").write_text("kept")
    safe_extract(make_tar(tmp_path / "a.tar", [reg("p/src/new.c", b"n")], "w"), dest)
    assert paths_under(dest) == ["src", "src/keep.c", "src/new.c"]


MALICIOUS = {
    "dotdot": ([reg("pkg/../../evil.txt")], "pkg/../../evil.txt", "'..'"),
    "absolute": ([reg("/tmp/hermitbuild-evil.txt")], "/tmp/hermitbuild-evil.txt", "absolute"),
    "abs_symlink": ([reg("pkg/a"), special("pkg/etc", tarfile.SYMTYPE, "/etc")], "pkg/etc", "absolute"),
    "escaping_symlink": ([reg("pkg/a"), special("pkg/up", tarfile.SYMTYPE, "../../outside")], "pkg/up",
                         "outside"),
    "symlink_escaping_stripped_root": ([reg("pkg/a"), special("pkg/sib", tarfile.SYMTYPE, "../other")],
                                       "pkg/sib", "outside"),
    "escaping_hardlink": ([reg("pkg/a"), special("pkg/pw", tarfile.LNKTYPE, "../etc/passwd")], "pkg/pw",
                          "hard link"),
    "absolute_hardlink": ([reg("pkg/a"), special("pkg/pw", tarfile.LNKTYPE, "/etc/passwd")], "pkg/pw",
                          "hard link"),
    "char_device": ([reg("pkg/a"), special("pkg/null", tarfile.CHRTYPE)], "pkg/null", "device"),
    "block_device": ([reg("pkg/a"), special("pkg/sda", tarfile.BLKTYPE)], "pkg/sda", "device"),
    "fifo": ([reg("pkg/a"), special("pkg/pipe", tarfile.FIFOTYPE)], "pkg/pipe", "FIFO"),
    # write through a symlink that points at the tree root's parent once followed
    "symlink_chain": ([reg("pkg/a"), special("pkg/y", tarfile.SYMTYPE, "x/.."),
                       special("pkg/x", tarfile.SYMTYPE, ".")], "y", "chain"),
    "write_through_symlink": ([special("pkg/d", tarfile.SYMTYPE, "."), special("pkg/e", tarfile.SYMTYPE, "d/.."),
                               reg("pkg/e/escaped.txt")], "pkg/e", "outside"),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_malicious_tarball_is_refused_and_leaves_nothing(tmp_path: Path, case: str) -> None:
    members, member, why = MALICIOUS[case]
    box = tmp_path / "box"
    box.mkdir()
    archive = make_tar(box / "evil.tar.gz", [reg("pkg/first.txt")] + members)
    with pytest.raises(UnpackError) as info:
        safe_extract(archive, box / "out", 1)
    text = str(info.value)
    assert str(archive) in text
    assert repr(member) in text
    assert why in text
    assert "fix:" in text
    assert paths_under(box) == ["evil.tar.gz"]  # no dest, no temp dir, nothing outside
    assert not Path("/tmp/hermitbuild-evil.txt").exists()
    assert not (tmp_path / "outside").exists() and not (tmp_path / "escaped.txt").exists()


def test_zip(tmp_path: Path) -> None:
    archive = tmp_path / "pkg.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("pkg-2/run.sh")
        info.external_attr = (stat.S_IFREG | 0o755) << 16
        zf.writestr(info, "#!/bin/sh\n")
        zf.writestr("pkg-2/data/a.txt", "a")
    safe_extract(archive, tmp_path / "out", 1)
    assert paths_under(tmp_path / "out") == ["data", "data/a.txt", "run.sh"]
    assert os.access(tmp_path / "out/run.sh", os.X_OK)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("pkg/ok.txt", "ok")
        zf.writestr("pkg/../../evil.txt", "bad")
    with pytest.raises(UnpackError, match=r"pkg/\.\./\.\./evil\.txt"):
        safe_extract(evil, tmp_path / "out2", 1)
    assert not (tmp_path / "out2").exists()


def test_not_an_archive_and_corrupt(tmp_path: Path) -> None:
    plain = tmp_path / "x.tar.gz"
    plain.write_bytes(b"hello, not an archive")
    with pytest.raises(UnpackError, match="not a tar"):
        safe_extract(plain, tmp_path / "out")
    good = make_tar(tmp_path / "g.tar.gz", [reg("p/f", os.urandom(200_000))])
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UnpackError):
        safe_extract(cut, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(UnpackError, match="does not exist"):
        safe_extract(tmp_path / "missing.tar", tmp_path / "out")
