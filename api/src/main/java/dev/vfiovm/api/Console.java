package dev.vfiovm.api;

/** Where the guest's serial console goes. */
public enum Console {
  /** The guest's serial console is the node pod's stdout: {@code kubectl logs ... -c node-agent} shows it. */
  Serial,
  /** No console device. */
  None
}
