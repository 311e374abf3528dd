"""Stand-in for @rules_cc//cc:defs.bzl that forwards to Bazel's native rules.

Bazel 4.2.3's own @bazel_tools loads C++ rule names from @rules_cc.  The real
rules_cc cannot be downloaded here, and Debian's bazel-rules-cc (0.0.4) needs a
newer Bazel, so this forwards the names @bazel_tools uses to the native rules,
which is all rules_cc did for Bazel 4 anyway.
"""

def cc_binary(**kwargs):
    native.cc_binary(**kwargs)

def cc_import(**kwargs):
    native.cc_import(**kwargs)

def cc_library(**kwargs):
    native.cc_library(**kwargs)

def cc_proto_library(**kwargs):
    native.cc_proto_library(**kwargs)

def cc_test(**kwargs):
    native.cc_test(**kwargs)

def cc_toolchain(**kwargs):
    native.cc_toolchain(**kwargs)

def cc_toolchain_suite(**kwargs):
    native.cc_toolchain_suite(**kwargs)

def objc_library(**kwargs):
    native.objc_library(**kwargs)
