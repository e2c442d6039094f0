// Preloaded (node --import) into every child started by processes.ts.
//
// The parent gives each child an IPC channel used for nothing but this: when the parent
// dies, even by SIGKILL where no cleanup code runs, the channel closes and 'disconnect'
// fires here, and the child dies with it instead of lingering (holding etcd leases/locks
// that would confuse the next test run).
if (process.channel) {
  // The channel itself must not keep the child alive once its real work is done.
  process.channel.unref();
  process.once('disconnect', () => {
    process.kill(process.pid, 'SIGKILL');
  });
}

export {};
