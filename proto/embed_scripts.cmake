# Generates the C header that embeds the regeneration scripts, so that the
# .lua files in proto/scripts/ stay their single source. Run by CMake with
#   cmake -DOUT=<header> -DSCRIPTS="a.lua|b.lua" -P embed_scripts.cmake
# For each script NAME.lua it defines INV__SCRIPT_<NAME>_SRC (the bytes as
# a char array initialiser, NUL-terminated), INV__SCRIPT_<NAME>_LEN and
# INV__SCRIPT_<NAME>_SHA (the SHA1 that Redis's SCRIPT LOAD returns).
string(REPLACE "|" ";" SCRIPTS "${SCRIPTS}")
set(text "/* Generated from the .lua files of proto/scripts by proto/embed_scripts.cmake. */\n")
foreach(path ${SCRIPTS})
  get_filename_component(name ${path} NAME_WE)
  string(TOUPPER ${name} upper)
  file(READ ${path} hex HEX)
  file(SHA1 ${path} sha)
  string(LENGTH "${hex}" hexlen)
  math(EXPR len "${hexlen} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND text "#define INV__SCRIPT_${upper}_LEN ${len}\n")
  string(APPEND text "#define INV__SCRIPT_${upper}_SHA \"${sha}\"\n")
  string(APPEND text "#define INV__SCRIPT_${upper}_SRC {\\\n  ${bytes}0x00}\n")
endforeach()
# Rewrite only on change, so that dependants are not rebuilt needlessly.
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT "${old}" STREQUAL "${text}")
  file(WRITE ${OUT} "${text}")
endif()
