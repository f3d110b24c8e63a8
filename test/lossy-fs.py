#!/usr/bin/python3
"""A pass-through FUSE filesystem that remembers what a power cut would keep (after LazyFS).

  lossy-fs.py BACKING MOUNTPOINT   serve BACKING/data at MOUNTPOINT (foreground, until unmounted)
  lossy-fs.py --cut BACKING        the power cut: every file goes back to its content as of its
                                   last fsync/fdatasync (a file never synced is empty)

What it models: the page cache. Writes land in BACKING/data at once (what readers see); each
fsync copies the ranges written since the last one into BACKING/durable, the medium. What it does
not model: directory entries (create, rename, unlink are durable at once, as a journaling
filesystem's metadata mostly is), torn sectors, and a medium that lies about flushes.
"""
import errno
import os
import shutil
import sys

try:
    from fuse import FUSE, FuseOSError, Operations
except ImportError:
    try:  # Debian names the module fusepy
        from fusepy import FUSE, FuseOSError, Operations
    except ImportError:  # the test reports this as a skip
        FUSE = None
        Operations = object


class LossyFs(Operations):
    def __init__(self, backing):
        self.data = os.path.join(backing, 'data')
        self.durable = os.path.join(backing, 'durable')
        os.makedirs(self.data, exist_ok=True)
        os.makedirs(self.durable, exist_ok=True)
        # path -> list of (offset, length) written since its last fsync
        self.dirty = {}

    def _d(self, path):
        return os.path.join(self.data, path.lstrip('/'))

    def _m(self, path):
        return os.path.join(self.durable, path.lstrip('/'))

    def _mark(self, path, offset, length):
        self.dirty.setdefault(path, []).append((offset, length))

    # metadata: durable at once
    def getattr(self, path, fh=None):
        try:
            st = os.lstat(self._d(path))
        except OSError as e:
            raise FuseOSError(e.errno)
        return {k: getattr(st, k) for k in ('st_mode', 'st_nlink', 'st_uid', 'st_gid', 'st_size', 'st_atime', 'st_mtime', 'st_ctime')}

    def readdir(self, path, fh):
        return ['.', '..'] + os.listdir(self._d(path))

    def access(self, path, mode):
        if not os.access(self._d(path), mode):
            raise FuseOSError(errno.EACCES)

    def chmod(self, path, mode):
        os.chmod(self._d(path), mode)
        if os.path.exists(self._m(path)):
            os.chmod(self._m(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._d(path), uid, gid)

    def utimens(self, path, times=None):
        os.utime(self._d(path), times)

    def mkdir(self, path, mode):
        os.mkdir(self._d(path), mode)
        os.makedirs(self._m(path), exist_ok=True)

    def rmdir(self, path):
        os.rmdir(self._d(path))
        shutil.rmtree(self._m(path), ignore_errors=True)

    def unlink(self, path):
        os.unlink(self._d(path))
        if os.path.exists(self._m(path)):
            os.unlink(self._m(path))
        self.dirty.pop(path, None)

    def rename(self, old, new):
        os.rename(self._d(old), self._d(new))
        if os.path.exists(self._m(old)):
            os.rename(self._m(old), self._m(new))
        else:
            open(self._m(new), 'wb').close()
        if old in self.dirty:
            self.dirty[new] = self.dirty.pop(old)

    def statfs(self, path):
        st = os.statvfs(self.data)
        return {k: getattr(st, k) for k in ('f_bavail', 'f_bfree', 'f_blocks', 'f_bsize', 'f_favail', 'f_ffree', 'f_files', 'f_flag', 'f_frsize', 'f_namemax')}

    # contents: durable only as of the last fsync
    def create(self, path, mode, fi=None):
        fd = os.open(self._d(path), os.O_RDWR | os.O_CREAT | os.O_TRUNC, mode)
        open(self._m(path), 'wb').close()
        return fd

    def open(self, path, flags):
        return os.open(self._d(path), flags & ~(os.O_CREAT | os.O_EXCL))

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        n = os.pwrite(fh, data, offset)
        self._mark(path, offset, n)
        return n

    def truncate(self, path, length, fh=None):
        with open(self._d(path), 'r+b') as f:
            f.truncate(length)
        self._mark(path, length, 0)

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        os.close(fh)
        return 0

    def fsync(self, path, datasync, fh):
        ranges = self.dirty.pop(path, [])
        # The handle may be write-only: the written ranges are read back through a handle of our own.
        with open(self._d(path), 'rb') as live, open(self._m(path), 'r+b' if os.path.exists(self._m(path)) else 'w+b') as medium:
            for offset, length in ranges:
                if length > 0:
                    medium.seek(offset)
                    medium.write(os.pread(live.fileno(), length, offset))
            medium.truncate(os.fstat(live.fileno()).st_size)
        return 0

    def fsyncdir(self, path, datasync, fh):
        return 0


def cut(backing):
    data = os.path.join(backing, 'data')
    durable = os.path.join(backing, 'durable')
    for root, _dirs, files in os.walk(data):
        for name in files:
            live = os.path.join(root, name)
            kept = os.path.join(durable, os.path.relpath(live, data))
            if os.path.exists(kept):
                shutil.copyfile(kept, live)
            else:
                open(live, 'wb').close()


def main():
    if len(sys.argv) == 3 and sys.argv[1] == '--cut':
        cut(sys.argv[2])
        return
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    if FUSE is None:
        sys.exit('lossy-fs: python3-fusepy is not installed (apt-get install python3-fusepy fuse3)')
    import logging
    logging.basicConfig(level=logging.ERROR)
    FUSE(LossyFs(sys.argv[1]), sys.argv[2], foreground=True, nothreads=True, default_permissions=True)


if __name__ == '__main__':
    main()
