// Which files of a directory are images, and where each one's thumbnail goes.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace pools_thumbs {

/// An image found, and its thumbnail's path.
struct Image {
  std::string relative;  // to the input directory, with '/' ("trip/beach.jpg")
  std::string input;     // input directory / relative
  std::string output;    // output directory / relative, suffix replaced by the format's
};

/// A file that is not an image, or a directory entry that was not followed.
struct Skipped {
  std::string relative;
  std::string why;
};

struct Scan {
  std::vector<Image> images;  // sorted by relative path
  std::vector<Skipped> skipped;
};

/// True when the name has the suffix of an image format libvips reads (case
/// does not matter): jpg jpeg jpe jfif png webp gif tif tiff heic heif avif
/// jxl jp2 j2k bmp pnm ppm pgm pbm.
bool has_image_suffix(const std::filesystem::path& name);

/// Walks `input_dir` recursively, in name order. Files with an image suffix
/// are images (what is inside is the decoder's business: a corrupt image fails
/// later, with a reason); other files are skipped with a note, as are
/// directories that cannot be read, symbolic links to directories (not
/// followed, so no loop is possible) and special files. The output directory
/// is not walked when it lies inside the input directory.
///
/// Thumbnails mirror the input tree: "a/b.png" becomes OUT/a/b.FORMAT. When
/// two images would get the same thumbnail name ("b.png" and "b.jpg"), each of
/// them keeps its whole name: "b.png.FORMAT" and "b.jpg.FORMAT".
/// Throws std::runtime_error when input_dir cannot be read.
Scan scan_directory(const std::filesystem::path& input_dir, const std::filesystem::path& output_dir,
                    const std::string& format);

}  // namespace pools_thumbs
