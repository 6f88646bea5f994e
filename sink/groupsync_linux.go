package sink

import (
	"os"

	"golang.org/x/sys/unix"
)

// syncFSTypes are the file systems whose syncfs(2) writes back every dirty file and
// commits their metadata, directory entries included (sync_fs with wait): ext4, XFS,
// Btrfs, F2FS and overlayfs (which syncs its upper file system); tmpfs has nothing to
// write back. FUSE and network file systems are left out: some accept syncfs and do
// nothing.
var syncFSTypes = map[int64]bool{
	unix.EXT4_SUPER_MAGIC:      true,
	unix.XFS_SUPER_MAGIC:       true,
	unix.BTRFS_SUPER_MAGIC:     true,
	unix.F2FS_SUPER_MAGIC:      true,
	unix.OVERLAYFS_SUPER_MAGIC: true,
	unix.TMPFS_MAGIC:           true,
}

// openSyncFS opens dir for syncfs if its file system is one of syncFSTypes, or returns nil.
func openSyncFS(dir string) *os.File {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || !syncFSTypes[int64(st.Type)] {
		return nil
	}
	fd, err := os.Open(dir)
	if err != nil {
		return nil
	}
	return fd
}

// syncFS is syncfs(2) on fd's file system.
func syncFS(fd *os.File) error {
	return unix.Syncfs(int(fd.Fd()))
}
