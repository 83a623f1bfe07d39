# The stub's `lib`: the functions gojinn's Nix files use, with nixpkgs' names and meanings, and the
# module system (modules.nix, types.nix).
let
  lib = rec {
    inherit (builtins)
      attrNames
      concatLists
      concatStringsSep
      elem
      filter
      foldl'
      genList
      head
      isAttrs
      isString
      length
      listToAttrs
      mapAttrs
      stringLength
      substring
      tail
      ;

    fix =
      f:
      let
        x = f x;
      in
      x;
    extends =
      overlay: f: final:
      let
        prev = f final;
      in
      prev // overlay final prev;

    genAttrs =
      names: f:
      listToAttrs (
        map (name: {
          inherit name;
          value = f name;
        }) names
      );
    optional = condition: x: if condition then [ x ] else [ ];
    optionals = condition: xs: if condition then xs else [ ];
    optionalAttrs = condition: attrs: if condition then attrs else { };
    optionalString = condition: s: if condition then s else "";
    last = xs: builtins.elemAt xs (length xs - 1);
    concatMap = f: xs: concatLists (map f xs);
    concatMapStringsSep = sep: f: xs: concatStringsSep sep (map f xs);
    all = builtins.all;
    any = builtins.any;
    imap1 = f: xs: genList (i: f (i + 1) (builtins.elemAt xs i)) (length xs);
    unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
    hasPrefix = prefix: s: substring 0 (stringLength prefix) s == prefix;
    hasSuffix =
      suffix: s:
      let
        n = stringLength s;
        m = stringLength suffix;
      in
      n >= m && substring (n - m) m s == suffix;
    hasInfix = infix: s: builtins.match ".*${escapeRegex infix}.*" s != null;
    escapeRegex = builtins.replaceStrings [ "." "[" "]" "(" ")" "*" "+" "?" "^" "$" "|" "\\" "{" "}" ] [
      "\\."
      "\\["
      "\\]"
      "\\("
      "\\)"
      "\\*"
      "\\+"
      "\\?"
      "\\^"
      "\\$"
      "\\|"
      "\\\\"
      "\\{"
      "\\}"
    ];
    removePrefix =
      prefix: s: if hasPrefix prefix s then substring (stringLength prefix) (stringLength s) s else s;
    splitString = sep: s: filter isString (builtins.split (escapeRegex sep) s);
    toList = x: if builtins.isList x then x else [ x ];
    isDerivation = x: isAttrs x && x.type or null == "derivation";
    isStorePath = x: hasPrefix "${builtins.storeDir}/" (toString x);
    isStringLike = x: isString x || builtins.isPath x || isAttrs x && x ? outPath;

    attrByPath =
      path: default: set:
      if path == [ ] then
        set
      else if isAttrs set && set ? ${head path} then
        attrByPath (tail path) default set.${head path}
      else
        default;
    recursiveUpdate =
      lhs: rhs:
      lhs
      // mapAttrs (
        name: value: if isAttrs value && isAttrs (lhs.${name} or null) then recursiveUpdate lhs.${name} value else value
      ) rhs;

    assertMsg = condition: message: condition || throw message;

    importTOML = path: builtins.fromTOML (builtins.readFile path);

    getName = x: x.pname or (builtins.parseDrvName x.name).name;
    getExe =
      x:
      "${x}/bin/${x.meta.mainProgram or (throw "getExe: ${getName x} sets no meta.mainProgram")}";

    # Only a path (the stub does not compose filtered sources).
    cleanSourceWith =
      {
        src,
        filter ? _: _: true,
        name ? "source",
      }:
      builtins.path {
        path = src;
        inherit name filter;
      };

    licenses = {
      asl20 = {
        shortName = "asl20";
        free = true;
      };
      bsl11 = {
        shortName = "bsl11";
        free = false;
      };
      mit = {
        shortName = "mit";
        free = true;
      };
    };
    platforms = {
      linux = [
        "x86_64-linux"
        "aarch64-linux"
      ];
    };

    showOption = concatStringsSep ".";
  };

  # The module system and the types need the whole lib, as modules do.
  full =
    lib
    // import ./modules.nix { lib = full; }
    // {
      types = import ./types.nix { lib = full; };
    };
in
full
